"""The optimizers' update kernels, sgd_update and adam_update: the compiled backend against
the reference (the same bits: both round every operation in the same order), every option,
every shape class, NaN and infinity, any input layout, bad input on both backends, the C
header on its own, and single steps against torch.optim."""
from __future__ import annotations

import itertools
import subprocess
import types

import numpy as np
import pytest

import cygrad
from cygrad import _elementwise, backends
from cygrad.backends import cython as compiled
from cygrad.backends import reference

DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]
# 0-d, empty, one element, odd sizes, several dimensions, and past 2^18 elements.
SHAPES = [(), (0,), (1,), (7,), (3, 5, 33), (2 ** 18 + 5,)]

SGD_OPTIONS = [
    dict(momentum=momentum, dampening=dampening, weight_decay=weight_decay,
         nesterov=nesterov, maximize=maximize)
    for momentum, dampening, weight_decay, nesterov, maximize in itertools.product(
        [0.0, 0.9], [0.0, 0.3], [0.0, 0.05], [False, True], [False, True])
    if not (nesterov and (momentum == 0 or dampening != 0))  # torch's rule for nesterov
]


def shape_id(shape: tuple) -> str:
    return "x".join(map(str, shape)) if shape else "scalar"


def sgd_id(options: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in options.items() if v) or "plain"


def arrays(rng, shape, dtype, count):
    return [np.asarray(rng.standard_normal(shape), dtype=dtype) for _ in range(count)]


def sgd_steps(module, param, grads, buf, **options):
    """Two steps, the first with first=True; returns (param, buf) after each."""
    seen = []
    for i, grad in enumerate(grads):
        module.sgd_update(param, grad, buf, lr=0.05, first=i == 0, **options)
        seen += [param.copy(), None if buf is None else buf.copy()]
    return seen


@pytest.mark.parametrize("options", SGD_OPTIONS, ids=sgd_id)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_sgd_update_matches_reference(shape, dtype, options, rng):
    start, g1, g2 = arrays(rng, shape, dtype, 3)
    results = []
    for module in (compiled, reference):
        param = start.copy()
        buf = np.full(shape, np.nan, dtype) if options["momentum"] else None  # first: unread
        results.append(sgd_steps(module, param, [g1, g2], buf, **options))
    for got, want in zip(*results):
        if want is not None:
            assert got.dtype == dtype and got.shape == shape
            np.testing.assert_array_equal(got, want)
    assert not np.array_equal(results[0][-2], start) or start.size == 0  # it stepped


def adam_steps(module, param, grads, m, v, beta1=0.9, beta2=0.999, lr=0.01, eps=1e-8):
    for t, grad in enumerate(grads, 1):
        module.adam_update(param, grad, m, v, step_size=lr / (1 - beta1 ** t), beta1=beta1,
                           beta2=beta2, eps=eps,
                           bias_correction2_sqrt=np.sqrt(1 - beta2 ** t).item())
    return param, m, v


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_adam_update_matches_reference(shape, dtype, rng):
    start, m0, g1, g2, g3 = arrays(rng, shape, dtype, 5)
    v0 = np.asarray(m0 * m0)  # 0-d: NumPy gives a scalar
    results = [adam_steps(module, start.copy(), [g1, g2, g3], m0.copy(), v0.copy())
               for module in (compiled, reference)]
    for got, want in zip(*results):
        assert got.dtype == dtype and got.shape == shape
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_update_with_scikit_learns_scalars(dtype, rng):
    """bias_correction2_sqrt = 1 and the correction folded into step_size, as scikit-learn's
    adam: the same formula, so the same bits on both backends, and within rounding of the
    torch form."""
    start, g = arrays(rng, (5, 9), dtype, 2)
    t, lr, beta1, beta2 = 3, 0.01, 0.9, 0.999
    step = lr * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
    got = []
    for module in (compiled, reference):
        param, m, v = start.copy(), np.zeros_like(start), np.zeros_like(start)
        module.adam_update(param, g, m, v, step_size=step, beta1=beta1, beta2=beta2,
                           eps=1e-8)
        got.append(param)
    np.testing.assert_array_equal(got[0], got[1])
    m, v = (1 - beta1) * g.astype(np.float64), (1 - beta2) * g.astype(np.float64) ** 2
    want = start - step * m / (np.sqrt(v) + 1e-8)
    np.testing.assert_allclose(got[0], want, rtol=1e-6 if dtype == np.float32 else 1e-14)


def test_sgd_update_is_the_formula(rng):
    """The documented formula, written out here in float64 with NumPy, on the public API."""
    p, g, buf = arrays(rng, (4, 6), np.float64, 3)
    want_buf = 0.9 * buf + (1 - 0.2) * (-g + 0.01 * p)
    want_p = p - 0.1 * want_buf
    for name in ("cython", "reference"):
        with cygrad.use_backend(name):
            got_p, got_buf = p.copy(), buf.copy()
            assert cygrad.kernels.sgd_update(got_p, g, got_buf, lr=0.1, momentum=0.9,
                                             dampening=0.2, weight_decay=0.01,
                                             maximize=True) is None
            np.testing.assert_allclose(got_buf, want_buf, rtol=1e-15)
            np.testing.assert_allclose(got_p, want_p, rtol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_without_momentum_leaves_the_buffer_alone(dtype, rng):
    p, g = arrays(rng, (6,), dtype, 2)
    for module in (compiled, reference):
        param, buf = p.copy(), np.full(6, 7.0, dtype)
        module.sgd_update(param, g, buf, lr=0.1)
        module.sgd_update(param, g, None, lr=0.1, first=True, nesterov=True)
        np.testing.assert_array_equal(buf, np.full(6, 7.0, dtype))
        np.testing.assert_array_equal(param, (p - dtype(0.1) * g) - dtype(0.1) * g)


# ------------------------------------------------------------------ NaN and infinity
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_propagate_as_in_the_reference(dtype, rng):
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0], dtype)
    p0 = np.array([1.0, 2.0, 3.0, np.inf, np.nan, -np.inf], dtype)
    g = special
    buf0 = np.roll(special, 2)
    with np.errstate(all="ignore"):
        for options in SGD_OPTIONS:
            out = []
            for module in (compiled, reference):
                p, buf = p0.copy(), buf0.copy()
                module.sgd_update(p, g, buf if options["momentum"] else None, lr=0.5,
                                  **options)
                out += [p, buf]
            np.testing.assert_array_equal(out[0], out[2], err_msg=sgd_id(options))
            np.testing.assert_array_equal(out[1], out[3], err_msg=sgd_id(options))
        out = []
        for module in (compiled, reference):
            p, m, v = p0.copy(), buf0.copy(), np.abs(np.roll(special, 1))
            module.adam_update(p, g, m, v, step_size=0.1, beta1=0.9, beta2=0.999, eps=1e-8,
                               bias_correction2_sqrt=0.5)
            out += [p, m, v]
        for a, b in zip(out[:3], out[3:]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_nan_gradient_makes_nan_only_where_it_is(dtype, kernels):
    g = np.array([1.0, np.nan, 2.0], dtype)
    p, buf = np.ones(3, dtype), np.empty(3, dtype)
    kernels.sgd_update(p, g, buf, lr=0.1, momentum=0.9, first=True)
    assert np.isnan(p[1]) and np.isnan(buf[1]) and np.isfinite(p[[0, 2]]).all()
    p, m, v = np.ones(3, dtype), np.zeros(3, dtype), np.zeros(3, dtype)
    kernels.adam_update(p, g, m, v, step_size=0.1, beta1=0.9, beta2=0.999, eps=1e-8)
    assert np.isnan(p[1]) and np.isnan(m[1]) and np.isnan(v[1])
    assert np.isfinite(p[[0, 2]]).all()


def test_no_weight_decay_keeps_an_infinite_parameter_infinite(kernels):
    """0 * inf would be NaN: the decay term is left out when weight_decay is 0, as in
    torch."""
    p = np.array([np.inf, -np.inf, 1.0])
    kernels.sgd_update(p, np.ones(3), lr=0.1)
    np.testing.assert_array_equal(p, [np.inf, -np.inf, 0.9])


# ------------------------------------------------------------------ layouts and aliasing
@pytest.mark.parametrize("dtype", DTYPES)
def test_any_gradient_layout_gives_the_same_update(dtype, kernels, rng):
    start, base = arrays(rng, (6, 8), dtype, 2)
    grads = {"strided": base[:, ::2].copy()[:, :4], "fortran": np.asfortranarray(base[:, :4]),
             "step-2 view": base[:, ::2], "read-only": base[:, :4].copy()}
    grads["read-only"].flags.writeable = False
    for name, grad in grads.items():
        want_p, want_b = start[:, :4].copy(), np.empty((6, 4), dtype)
        reference.sgd_update(want_p, np.array(grad), want_b, lr=0.1, momentum=0.5, first=True)
        p, b = start[:, :4].copy(), np.empty((6, 4), dtype)
        kernels.sgd_update(p, grad, b, lr=0.1, momentum=0.5, first=True)
        np.testing.assert_array_equal(p, want_p, err_msg=name)
        np.testing.assert_array_equal(b, want_b, err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_gradient_that_overlaps_what_is_written_is_read_as_it_was(dtype, kernels, rng):
    (start,) = arrays(rng, (10,), dtype, 1)
    for name, pick in (("param", lambda p, m, v: p), ("exp_avg", lambda p, m, v: m),
                       ("exp_avg_sq", lambda p, m, v: v), ("part of m", lambda p, m, v: m)):
        p, m, v = start.copy(), start[::-1].copy(), np.abs(start)
        want_p, want_m, want_v = p.copy(), m.copy(), v.copy()
        grad = pick(p, m, v)
        reference.adam_update(want_p, grad.copy(), want_m, want_v, step_size=0.1, beta1=0.9,
                              beta2=0.99, eps=1e-8)
        kernels.adam_update(p, grad, m, v, step_size=0.1, beta1=0.9, beta2=0.99, eps=1e-8)
        for got, want in ((p, want_p), (m, want_m), (v, want_v)):
            np.testing.assert_array_equal(got, want, err_msg=name)
    buffer = start.copy()
    p, grad = buffer[:6], buffer[4:]  # partial overlap
    want = buffer[:6].copy()
    reference.sgd_update(want, buffer[4:].copy(), lr=0.5)
    kernels.sgd_update(p, grad, lr=0.5)
    np.testing.assert_array_equal(p, want)


def test_numpy_scalars_and_flags_give_the_same_update(kernels, rng):
    start, g = arrays(rng, (5,), np.float32, 2)
    want, want_buf = start.copy(), np.empty(5, np.float32)
    kernels.sgd_update(want, g, want_buf, lr=0.1, momentum=0.9, dampening=0.1,
                       weight_decay=0.01, nesterov=False, maximize=True, first=True)
    got, got_buf = start.copy(), np.empty(5, np.float32)
    kernels.sgd_update(got, g, got_buf, lr=np.float64(0.1), momentum=np.float64(0.9),
                       dampening=np.float64(0.1), weight_decay=np.float64(0.01),
                       nesterov=np.bool_(False), maximize=np.bool_(True), first=np.bool_(True))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_buf, want_buf)
    results = []
    for scalars in (dict(step_size=0.5, beta1=0.5, beta2=0.75, eps=1.0,
                         bias_correction2_sqrt=2.0),
                    dict(step_size=np.float32(0.5), beta1=np.float64(0.5), beta2=0.75, eps=1,
                         bias_correction2_sqrt=np.int64(2))):
        p, m, v = start.copy(), g.copy(), np.abs(g)
        kernels.adam_update(p, g, m, v, **scalars)
        results.append((p, m, v))
    for got, want in zip(*results):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(results[0][0], start)


# ------------------------------------------------------------------ bad input
def _sgd(kernels, **changes):
    args = dict(param=np.zeros((2, 3)), grad=np.ones((2, 3)), momentum_buffer=np.zeros((2, 3)),
                lr=0.1, momentum=0.9)
    args.update(changes)
    param, grad, buf = args.pop("param"), args.pop("grad"), args.pop("momentum_buffer")
    return kernels.sgd_update(param, grad, buf, **args)


def _adam(kernels, **changes):
    args = dict(param=np.zeros((2, 3)), grad=np.ones((2, 3)), exp_avg=np.zeros((2, 3)),
                exp_avg_sq=np.zeros((2, 3)), step_size=0.1, beta1=0.9, beta2=0.999, eps=1e-8)
    args.update(changes)
    arrays_ = [args.pop(k) for k in ("param", "grad", "exp_avg", "exp_avg_sq")]
    return kernels.adam_update(*arrays_, **args)


def _read_only(shape=(2, 3)):
    a = np.zeros(shape)
    a.flags.writeable = False
    return a


_SHARED = np.zeros((2, 3))
BAD_SGD = [
    (dict(param=[[0.0] * 3] * 2), TypeError, r"^param: expected a NumPy array"),
    (dict(param=np.zeros((2, 3), np.int64)), TypeError, r"^param: expected float32 or float64"),
    (dict(param=np.zeros((3, 6))[:2, ::2]), ValueError, r"^param: must be C-contiguous"),
    (dict(param=_read_only()), ValueError, r"^param: must be writable"),
    (dict(grad=np.ones((2, 3), np.float32)), TypeError, r"^grad: expected float64"),
    (dict(grad=np.ones((3, 2))), ValueError, r"^grad: expected float64 of shape \(2, 3\)"),
    (dict(grad=None), TypeError, r"^grad: expected a NumPy array"),
    (dict(momentum_buffer=None), ValueError, r"^momentum_buffer: required when momentum"),
    (dict(momentum_buffer=np.zeros(6)), ValueError, r"^momentum_buffer: expected float64"),
    (dict(momentum_buffer=np.zeros((2, 3), np.float32)), TypeError, r"^momentum_buffer: "),
    (dict(momentum_buffer=_read_only()), ValueError, r"^momentum_buffer: must be writable"),
    (dict(param=_SHARED, momentum_buffer=_SHARED), ValueError,
     r"^momentum_buffer: shares memory with param"),
    (dict(lr="0.1"), TypeError, r"^lr: expected a real number, got str"),
    (dict(lr=None), TypeError, r"^lr: expected a real number"),
    (dict(momentum=True), TypeError, r"^momentum: expected a real number, got bool"),
    (dict(dampening=[0.0]), TypeError, r"^dampening: expected a real number"),
    (dict(weight_decay=1j), TypeError, r"^weight_decay: expected a real number"),
    (dict(nesterov=1), TypeError, r"^nesterov: expected True or False"),
    (dict(maximize="yes"), TypeError, r"^maximize: expected True or False"),
    (dict(first=None), TypeError, r"^first: expected True or False"),
]


@pytest.mark.parametrize("changes, error, message", BAD_SGD,
                         ids=[f"{i}-{next(iter(c))}" for i, (c, _, _) in enumerate(BAD_SGD)])
def test_bad_sgd_input_raises_naming_the_argument(changes, error, message, kernels):
    written = [a for a in (changes.get("param"), changes.get("momentum_buffer"))
               if isinstance(a, np.ndarray)]
    before = [a.copy() for a in written]
    with pytest.raises(error, match=message):
        _sgd(kernels, **changes)
    for a, b in zip(written, before):
        np.testing.assert_array_equal(a, b)  # nothing written


def test_overlapping_state_arrays_are_refused(kernels):
    block = np.zeros(8)
    with pytest.raises(ValueError, match=r"^exp_avg: shares memory with param"):
        _adam(kernels, param=block[:4], grad=np.ones(4), exp_avg=block[3:7],
              exp_avg_sq=np.zeros(4))
    with pytest.raises(ValueError, match=r"^exp_avg_sq: shares memory with exp_avg"):
        _adam(kernels, param=np.zeros(4), grad=np.ones(4), exp_avg=block[:4],
              exp_avg_sq=block[:4])
    with pytest.raises(ValueError, match=r"^exp_avg_sq: shares memory with param"):
        _adam(kernels, param=block[:4], grad=np.ones(4), exp_avg=np.zeros(4),
              exp_avg_sq=block[2:6])
    np.testing.assert_array_equal(block, 0)


BAD_ADAM = [
    (dict(param=np.zeros((2, 3), np.float16)), TypeError, r"^param: expected float32 or"),
    (dict(grad=np.ones(6)), ValueError, r"^grad: expected float64 of shape \(2, 3\)"),
    (dict(exp_avg=None), TypeError, r"^exp_avg: expected a NumPy array of float64 of shape "
                                    r"\(2, 3\), got None"),
    (dict(exp_avg=np.zeros((2, 3), np.float32)), TypeError, r"^exp_avg: expected float64"),
    (dict(exp_avg_sq=np.zeros((3, 2))), ValueError, r"^exp_avg_sq: expected float64 of"),
    (dict(exp_avg_sq=np.zeros((2, 6))[:, ::2]), ValueError, r"^exp_avg_sq: must be C-cont"),
    (dict(exp_avg=_read_only()), ValueError, r"^exp_avg: must be writable"),
    (dict(step_size="1"), TypeError, r"^step_size: expected a real number"),
    (dict(beta1=None), TypeError, r"^beta1: expected a real number"),
    (dict(beta2=False), TypeError, r"^beta2: expected a real number"),
    (dict(eps=np.array([1e-8])), TypeError, r"^eps: expected a real number"),
    (dict(bias_correction2_sqrt="x"), TypeError, r"^bias_correction2_sqrt: expected a real"),
]


@pytest.mark.parametrize("changes, error, message", BAD_ADAM,
                         ids=[f"{i}-{next(iter(c))}" for i, (c, _, _) in enumerate(BAD_ADAM)])
def test_bad_adam_input_raises_naming_the_argument(changes, error, message, kernels):
    with pytest.raises(error, match=message):
        _adam(kernels, **changes)


def test_a_direct_call_of_the_compiled_functions_is_memory_safe():
    """The compiled functions check sizes, layouts and overlaps themselves."""
    p, g = np.zeros(4), np.ones(4)
    cases = [
        lambda: _elementwise.sgd_update(p, np.ones(5), None, 0.1, 0.0, 0.0, 0.0, False, False,
                                        False),
        lambda: _elementwise.sgd_update(p, g, None, 0.1, 0.9, 0.0, 0.0, False, False, False),
        lambda: _elementwise.sgd_update(p, g, np.zeros(3), 0.1, 0.9, 0.0, 0.0, False, False,
                                        False),
        lambda: _elementwise.sgd_update(p, g, p, 0.1, 0.9, 0.0, 0.0, False, False, False),
        lambda: _elementwise.sgd_update(p, g.astype(np.float32), None, 0.1, 0.0, 0.0, 0.0,
                                        False, False, False),
        lambda: _elementwise.adam_update(p, g, p, np.zeros(4), 0.1, 0.9, 0.9, 0.0, 1.0),
        lambda: _elementwise.adam_update(p, g, np.zeros(5), np.zeros(4), 0.1, 0.9, 0.9, 0.0,
                                         1.0),
        lambda: _elementwise.adam_update(p, g, np.zeros(4), np.zeros(8)[::2], 0.1, 0.9, 0.9,
                                         0.0, 1.0),
    ]
    for i, case in enumerate(cases):
        with pytest.raises(ValueError):
            case()
        np.testing.assert_array_equal(p, 0, err_msg=str(i))


def test_a_registered_backend_without_the_updates_runs_the_references(monkeypatch, rng):
    kernels = {name: getattr(reference, name) for name in backends.KERNEL_NAMES}
    monkeypatch.setattr(backends, "_backends", dict(backends._backends))
    cygrad.register_backend("minimal", types.SimpleNamespace(**kernels))
    p, g = arrays(rng, (3,), np.float64, 2)
    want = p.copy()
    reference.sgd_update(want, g, lr=0.1, weight_decay=0.1)
    with cygrad.use_backend("minimal"):
        cygrad.kernels.sgd_update(p, g, lr=0.1, weight_decay=0.1)
    np.testing.assert_array_equal(p, want)


# ------------------------------------------------------------------ the C header alone
HEADER_PROGRAM = r"""
#include <stdio.h>
#include "_update.h"
int main(void) {
    float p[3] = {1.0f, -2.0f, 0.5f}, g[3] = {0.25f, 1.0f, -3.0f}, b[3], m[3] = {0}, v[3] = {0};
    double pd[3] = {1.0, -2.0, 0.5}, gd[3] = {0.25, 1.0, -3.0}, bd[3], md[3] = {0}, vd[3] = {0};
    cg_sgd_f(3, p, g, b, 0.1f, 0.9f, (float)(1.0 - 0.3), 0.01f, -1.0f, 0, 1);
    cg_sgd_f(3, p, g, b, 0.1f, 0.9f, (float)(1.0 - 0.3), 0.01f, -1.0f, 0, 0);
    cg_sgd_d(3, pd, gd, bd, 0.1, 0.9, 1.0, 0.01, 1.0, 1, 1);
    cg_sgd_d(3, pd, gd, bd, 0.1, 0.9, 1.0, 0.01, 1.0, 1, 0);
    cg_sgd_f(3, p, g, NULL, 0.1f, 0.0f, 1.0f, 0.0f, 1.0f, 0, 0);
    cg_adam_f(3, p, g, m, v, 0.01f, 0.9f, (float)(1.0 - 0.9), 0.999f, (float)(1.0 - 0.999),
              1e-8f, 0.5f);
    cg_adam_d(3, pd, gd, md, vd, 0.01, 0.9, 1.0 - 0.9, 0.999, 1.0 - 0.999, 1e-8, 0.5);
    for (int i = 0; i < 3; i++) printf("%a %a %a %a\n", p[i], b[i], m[i], v[i]);
    for (int i = 0; i < 3; i++) printf("%a %a %a %a\n", pd[i], bd[i], md[i], vd[i]);
    return 0;
}
"""


@pytest.mark.parametrize("flags", [("-O2",), ("-O3", "-ffp-contract=fast"),
                                   ("-O2", "-U__linux__")],
                         ids=["clones", "contract-fast", "portable"])
def test_the_header_alone_gives_the_references_bits(flags, c_probe):
    """csrc/_update.h compiles on its own without a warning, with target_clones and in the
    portable branch (other compilers), and keeps its order of operations even where the
    command line allows fused multiply-adds."""
    build, program = c_probe("_update.h", HEADER_PROGRAM, *flags)
    assert build.returncode == 0, build.stderr
    lines = subprocess.run([str(program)], capture_output=True, text=True,
                           check=True).stdout.split("\n")
    got = np.array([[float.fromhex(v) for v in line.split()] for line in lines[:6]])
    results = []
    for dtype, maximize, dampening, nesterov in ((np.float32, True, 0.3, False),
                                                 (np.float64, False, 0.0, True)):
        p = np.array([1.0, -2.0, 0.5], dtype)
        g, b = np.array([0.25, 1.0, -3.0], dtype), np.empty(3, dtype)
        m, v = np.zeros(3, dtype), np.zeros(3, dtype)
        for first in (True, False):
            reference.sgd_update(p, g, b, lr=0.1, momentum=0.9, dampening=dampening,
                                 weight_decay=0.01, maximize=maximize, nesterov=nesterov,
                                 first=first)
        if dtype == np.float32:
            reference.sgd_update(p, g, lr=0.1)
        reference.adam_update(p, g, m, v, step_size=0.01, beta1=0.9, beta2=0.999, eps=1e-8,
                              bias_correction2_sqrt=0.5)
        results.append(np.stack([p, b, m, v], axis=1).astype(np.float64))
    np.testing.assert_array_equal(got, np.concatenate(results))


# ------------------------------------------------------------------ against torch.optim
TORCH_TOL = {np.float32: dict(rtol=1e-6, atol=1e-7), np.float64: dict(rtol=1e-14, atol=1e-15)}


@pytest.mark.parametrize("options", SGD_OPTIONS, ids=sgd_id)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_update_is_torchs_step(dtype, options, kernels, rng):
    torch = pytest.importorskip("torch")
    start, g1, g2 = arrays(rng, (4, 5), dtype, 3)
    q = torch.tensor(start, requires_grad=True)
    opt = torch.optim.SGD([q], lr=0.05, **options)
    p = start.copy()
    buf = np.empty_like(p) if options["momentum"] else None
    for i, g in enumerate((g1, g2)):
        q.grad = torch.from_numpy(g.copy())
        opt.step()
        kernels.sgd_update(p, g, buf, lr=0.05, first=i == 0, **options)
        np.testing.assert_allclose(p, q.detach().numpy(), **TORCH_TOL[dtype])
        if buf is not None:
            np.testing.assert_allclose(buf, opt.state[q]["momentum_buffer"].numpy(),
                                       **TORCH_TOL[dtype])


@pytest.mark.parametrize("betas, eps", [((0.9, 0.999), 1e-8), ((0.8, 0.99), 1e-6)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_update_is_torchs_step(dtype, betas, eps, kernels, rng):
    torch = pytest.importorskip("torch")
    start, *grads = arrays(rng, (4, 5), dtype, 4)
    q = torch.tensor(start, requires_grad=True)
    opt = torch.optim.Adam([q], lr=0.01, betas=betas, eps=eps)
    p, m, v = start.copy(), np.zeros_like(start), np.zeros_like(start)
    beta1, beta2 = betas
    for t, g in enumerate(grads, 1):
        q.grad = torch.from_numpy(g.copy())
        opt.step()
        kernels.adam_update(p, g, m, v, step_size=0.01 / (1 - beta1 ** t), beta1=beta1,
                            beta2=beta2, eps=eps,
                            bias_correction2_sqrt=(1 - beta2 ** t) ** 0.5)
        state = opt.state[q]
        np.testing.assert_allclose(m, state["exp_avg"].numpy(), **TORCH_TOL[dtype])
        np.testing.assert_allclose(v, state["exp_avg_sq"].numpy(), **TORCH_TOL[dtype])
        np.testing.assert_allclose(p, q.detach().numpy(), **TORCH_TOL[dtype])


# ------------------------------------------------------------------ in the optimizers
def test_the_optimizers_call_the_kernel_once_per_parameter(monkeypatch, rng):
    calls = []

    def logged(name):
        def kernel(*args, **kwargs):
            calls.append(name)
            return getattr(reference, name)(*args, **kwargs)
        return kernel

    kernels = {name: getattr(reference, name) for name in backends.KERNEL_NAMES}
    kernels.update((name, logged(name)) for name in backends.OPTIONAL_KERNEL_NAMES)
    monkeypatch.setattr(backends, "_backends", dict(backends._backends))
    cygrad.register_backend("logged", types.SimpleNamespace(**kernels))
    params = [cygrad.Tensor(a, requires_grad=True) for a in arrays(rng, (3, 2), np.float64, 3)]
    with cygrad.use_backend("logged"):
        for make, name in ((lambda: cygrad.optim.SGD(params, lr=0.1, momentum=0.9),
                            "sgd_update"),
                           (lambda: cygrad.optim.Adam(params, weight_decay=0.1), "adam_update")):
            opt = make()
            for _ in range(2):
                for p in params:
                    p.grad = rng.standard_normal(p.shape)
                opt.step()
            assert calls == [name] * 6
            calls.clear()


@pytest.mark.parametrize("make", [
    lambda ps: cygrad.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
    lambda ps: cygrad.optim.Adam(ps, lr=0.01),
    lambda ps: cygrad.optim.Adam(ps, lr=0.01, amsgrad=True, maximize=True),
], ids=["SGD", "Adam", "Adam-amsgrad"])
def test_a_strided_parameter_and_a_float64_gradient_step_as_a_plain_one(make, backend, rng):
    """A Fortran-ordered parameter is updated through a C-ordered copy written back into
    the same array; a float64 gradient set by hand on a float32 parameter is rounded to
    float32 first."""
    start = rng.standard_normal((4, 3)).astype(np.float32)
    strided = cygrad.Tensor(np.asfortranarray(start), requires_grad=True)
    plain = cygrad.Tensor(start.copy(), requires_grad=True)
    data = strided.data
    assert not data.flags.c_contiguous
    opts = make([strided]), make([plain])
    for _ in range(3):
        g = rng.standard_normal((4, 3))
        strided.grad, plain.grad = g, g.astype(np.float32)
        for opt in opts:
            opt.step()
    assert strided.data is data and data.dtype == np.float32
    np.testing.assert_array_equal(data, plain.data)
    assert not np.array_equal(plain.data, start)
