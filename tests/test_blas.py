"""Which BLAS the products run on (NumPy's where found, else SciPy's), and the optimizers'
one-pass update. The products' results on each BLAS are in test_kernels.py (each_blas)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

import cygrad
from cygrad import _linear, optim, runtime
from cygrad.backends import cython as compiled
from cygrad.backends import reference

DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]


def numpy_ships_ilp64_openblas() -> bool:
    """NumPy's own account of its BLAS: a 64-bit-integer OpenBLAS (its wheels). NumPy 2
    calls it scipy-openblas ("USE64BITINT" in its configuration), NumPy 1.26 openblas64
    ("USE_64BITINT=1"); before 1.26, show_config has no dicts and NumPy 1's distutils
    record says it (HAVE_BLAS_ILP64)."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except TypeError:  # NumPy < 1.26
        record = getattr(np.__config__, "blas_ilp64_opt_info", None) or {}
        return any("openblas" in lib for lib in record.get("libraries", [])) and \
            ("HAVE_BLAS_ILP64", None) in record.get("define_macros", [])
    configuration = blas.get("openblas configuration", "")
    return "openblas" in str(blas.get("name")) and \
        re.search(r"\bUSE_?64BITINT\b(?!=0)", configuration) is not None


def python(code: str, **env_vars) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CYGRAD_")}
    env.update(env_vars)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)


# ------------------------------------------------------------------ choosing the BLAS
def test_numpy_blas_is_used_when_numpy_ships_it():
    """With NumPy's wheels the products share NumPy's OpenBLAS, at 64-bit sizes; with any
    other NumPy build, or with CYGRAD_BLAS=scipy, they run on SciPy's, at 32-bit sizes."""
    name, limit = _linear.blas_in_use()
    if os.environ.get("CYGRAD_BLAS", "").strip().lower() == "scipy":  # the user's choice
        assert (name, limit) == ("scipy", 2 ** 31 - 1)
    elif numpy_ships_ilp64_openblas():
        assert (name, limit) == ("numpy", 2 ** 63 - 1)
        assert runtime.find_numpy_blas() is not None
    else:
        assert (name, limit) == ("scipy", 2 ** 31 - 1)


def test_numpy_blas_is_the_library_numpy_loaded():
    """The library found is NumPy's own file (so the same loaded copy and thread pool),
    not another OpenBLAS on the system."""
    found = runtime.find_numpy_blas()
    if found is None:
        assert not numpy_ships_ilp64_openblas()
        return
    path, addresses = found
    numpy_root = os.path.dirname(os.path.dirname(np.__file__))
    assert os.path.commonpath([os.path.realpath(path), os.path.realpath(numpy_root)]) == \
        os.path.realpath(numpy_root)
    assert len(addresses) == 6 and all(isinstance(a, int) and a > 0 for a in addresses)
    if sys.platform.startswith("linux"):
        with open("/proc/self/maps") as maps:
            loaded = {line.split()[-1] for line in maps if "openblas" in line}
        assert os.path.realpath(path) in {os.path.realpath(p) for p in loaded}


@pytest.mark.parametrize("value, expected", [("scipy", "scipy"), ("SciPy ", "scipy"),
                                             ("", None)])
@pytest.mark.subprocess
def test_environment_variable_chooses(value, expected):
    result = python("import cygrad; from cygrad import _linear; "
                    "print(_linear.blas_in_use()[0])", CYGRAD_BLAS=value)
    assert result.returncode == 0, result.stderr
    want = expected or ("numpy" if runtime.find_numpy_blas() else "scipy")
    assert result.stdout.split() == [want]


@pytest.mark.subprocess
def test_environment_variable_numpy_is_honoured_or_refused():
    """CYGRAD_BLAS=numpy uses NumPy's BLAS, or says it was not found (the compiled backend
    is then unavailable, and cygrad says why)."""
    result = python("import warnings; warnings.simplefilter('error'); import cygrad; "
                    "from cygrad import _linear; print(_linear.blas_in_use()[0])",
                    CYGRAD_BLAS="numpy")
    if runtime.find_numpy_blas():
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["numpy"]
    else:
        assert result.returncode != 0 and "CYGRAD_BLAS=numpy" in result.stderr


@pytest.mark.subprocess
def test_unknown_environment_value_is_a_clear_error():
    result = python("import cygrad", CYGRAD_BLAS="mkl")
    assert result.returncode != 0
    assert "ValueError: CYGRAD_BLAS: expected one of numpy, scipy, got 'mkl'" in result.stderr


def test_runtime_info_names_the_blas_in_use():
    name, _ = _linear.blas_in_use()
    text = cygrad.runtime.info()["BLAS"]
    assert text.startswith("NumPy's" if name == "numpy" else "SciPy's"), text
    assert "unknown build" not in text, text  # also where show_config has no dicts


def test_small_matrix_kernels_follow_the_blas_core():
    """A small batch's forward runs in blocks for OpenBLAS's small-matrix kernels exactly
    where OpenBLAS chose kernels for a core that has them; `info` says which core."""
    core = runtime._blas_core(runtime._blas_path)
    has_them = (core or "").lower() in ("skylakex", "cooperlake", "sapphirerapids")
    assert _linear.small_matrix_kernels() == has_them
    assert runtime.info()["BLAS kernels"].startswith(core or "unknown")
    assert ("small-matrix kernels" in runtime.info()["BLAS kernels"]) == has_them


@pytest.mark.subprocess
def test_small_matrix_kernels_off_on_other_cores():
    """OpenBLAS told to use its oldest x86 kernels (ignored elsewhere): no blocks."""
    result = python("import cygrad; from cygrad import _linear, runtime; "
                    "print(_linear.small_matrix_kernels(), runtime.info()['BLAS kernels'])",
                    OPENBLAS_CORETYPE="Prescott")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "False", result.stdout
    assert "small-matrix" not in result.stdout


@pytest.mark.parametrize("addresses", [None, (), (1, 2, 3, 4), (1, 2, 3, 4, 5, 0),
                                       (1, 2, 3, 4, 5, "6"), (1, 2, 3, 4, 5, 6, 7)])
@pytest.mark.parametrize("ilp64", [True, False])
def test_use_blas_rejects_bad_addresses(addresses, ilp64):
    before = _linear.blas_in_use()
    with pytest.raises(ValueError, match="addresses"):
        _linear.use_blas("other", addresses, ilp64)
    assert _linear.blas_in_use() == before


def test_use_blas_switches_and_names_the_choice():
    before = runtime.blas_in_use()
    try:
        runtime.use_blas("scipy")
        assert _linear.blas_in_use() == ("scipy", 2 ** 31 - 1)
        with pytest.raises(ValueError, match="^name: expected one of numpy, scipy"):
            runtime.use_blas("mkl")
        assert runtime.blas_in_use() == "scipy"
    finally:
        runtime.use_blas(before)


def test_products_past_the_32_bit_limit_are_refused_only_on_scipys_blas(each_blas):
    """The size check follows the BLAS in use: a product over 2^31 terms (0-size arrays,
    no memory) is refused with a ValueError naming `a` on SciPy's 32-bit interface, and
    computed on NumPy's."""
    k = 2 ** 31
    args = (np.zeros((0, 0), np.float32), np.zeros((0, k), np.float32),
            np.zeros((k, 0), np.float32))
    if each_blas == "scipy":
        with pytest.raises(ValueError, match="^a: a dimension of 2147483648 exceeds"):
            compiled.matmul_backward(*args)
    else:
        grad_a, grad_b = compiled.matmul_backward(*args)
        assert grad_a.shape == (0, k) and grad_b.shape == (k, 0)


# ------------------------------------------------------------- the one-pass update
SIZES = [0, 1, 7, 1000, 200_000]


def within_one_rounding(got: np.ndarray, p: np.ndarray, alpha, x: np.ndarray) -> None:
    """got is p + alpha * x (alpha rounded to the dtype, as NumPy does) as NumPy computes
    it, or with the product unrounded: axpy may fuse the multiply and the add. The two
    differ by at most the product's rounding (half a unit in its last place) plus the
    sum's (one unit, as either may round the other way)."""
    alpha = np.asarray(alpha, p.dtype)
    product = alpha * x
    numpy = p + product
    bound = np.spacing(np.abs(product)) / 2 + np.spacing(np.abs(numpy))
    assert got.dtype == p.dtype
    excess = np.abs(got - numpy) - bound
    assert np.all(excess <= 0), f"off by up to {excess.max()} beyond one rounding"


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_add_scaled_is_numpys_update(n, dtype, rng, each_blas):
    """out += alpha * x is NumPy's `p -= lr * g`, to one rounding, on either BLAS."""
    p = rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    got = p.copy()
    compiled.add_scaled(got, g, -0.1)
    within_one_rounding(got, p, -0.1, g)


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_scaled_takes_any_input_layout_and_aliasing(dtype, rng):
    base = rng.standard_normal((6, 8)).astype(dtype)
    cases = {
        "strided x": lambda p: (p, base[:, ::2]),
        "fortran x": lambda p: (p, np.asfortranarray(base[:, :4])),
        "x is out": lambda p: (p, p),
        "overlapping x": lambda p: (p[1:], p[:-1]),
        "float64 x into float32": lambda p: (p, base[:, :4].astype(np.float64)),
        "broadcast x": lambda p: (p, np.broadcast_to(base[0, :4], p.shape)),
        "2-D out, 2-D x": lambda p: (p, base[:, 4:].copy()),
    }
    for name, make in cases.items():
        p = base[:, :4].copy()
        out, x = make(p)
        before, x_before = out.copy(), np.array(x)  # NumPy reads x as it was
        compiled.add_scaled(out, x, 0.5)
        if x_before.dtype == out.dtype:
            within_one_rounding(out, before, 0.5, x_before)
        else:  # NumPy's mixed-dtype arithmetic, which add_scaled leaves to NumPy
            want = before.copy()
            want += 0.5 * x_before
            np.testing.assert_array_equal(out, want, err_msg=name)


def test_add_scaled_into_a_strided_output_writes_through(rng):
    base = rng.standard_normal((4, 6))
    view = base[:, ::2]
    x = np.ones(view.shape)
    want = base.copy()
    want[:, ::2] += 2.0
    compiled.add_scaled(view, x, 2.0)
    np.testing.assert_array_equal(base, want)


def test_add_scaled_refuses_a_read_only_output():
    p = np.ones(4)
    p.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        compiled.add_scaled(p, np.ones(4), 1.0)


def test_add_scaled_blas_call_checks_its_arguments():
    """The compiled call itself refuses what it cannot take, before writing anything."""
    p = np.ones(4, np.float32)
    for bad in [(p, np.ones(4)), (p, np.ones(5, np.float32)), (np.ones(8, np.float32)[::2],
                np.ones(4, np.float32)), (np.ones(4, np.int64), np.ones(4, np.int64)),
                (p, np.ones(8, np.float32)[::2])]:
        with pytest.raises((TypeError, ValueError)):
            _linear.add_scaled(*bad, 1.0)
    np.testing.assert_array_equal(p, 1)
    with pytest.raises(TypeError):
        _linear.add_scaled(None, p, 1.0)


@pytest.mark.parametrize("backend", ["cython", "reference"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_update_is_the_numpy_rule(backend, momentum, rng):
    """SGD's step on either backend is NumPy's p -= lr * g, to one rounding per step (the
    reference backend: exactly)."""
    cygrad.set_backend(backend)
    w = cygrad.Tensor(rng.standard_normal((300, 70)).astype(np.float32), requires_grad=True)
    grads = [rng.standard_normal(w.shape).astype(np.float32) for _ in range(3)]
    opt = optim.SGD([w], lr=0.05, momentum=momentum)
    buf = None
    for g in grads:
        before = w.data.copy()
        w.grad = g.copy()
        opt.step()
        if momentum:
            buf = g.copy() if buf is None else buf * np.float32(momentum) + g
            step = buf
        else:
            step = g
        if backend == "reference":
            np.testing.assert_array_equal(w.data, before - 0.05 * step)
        else:
            within_one_rounding(w.data, before, -0.05, step)


def test_reference_add_scaled_is_numpys_expression(rng):
    a, x = rng.standard_normal(1000), rng.standard_normal(1000)
    want = a + -0.3 * x
    reference.add_scaled(a, x, -0.3)
    np.testing.assert_array_equal(a, want)


def test_scipy_blas_is_taken_from_its_capsules_with_32_bit_sizes():
    _, addresses = runtime._scipy_blas()
    assert len(addresses) == 6 and all(isinstance(a, int) and a > 0 for a in addresses)


@pytest.mark.subprocess
def test_kernels_refuse_to_run_before_a_blas_is_chosen():
    """The compiled module loaded on its own (not through cygrad's backends, which choose
    a BLAS) raises a RuntimeError rather than calling through a NULL address."""
    folder = os.path.dirname(_linear.__file__)
    result = python("import sys, numpy as np\n"
                    f"sys.path.insert(0, {folder!r})\n"
                    "import _linear\n"
                    "print(_linear.blas_in_use())\n"
                    "m = np.ones((2, 2), np.float32)\n"
                    "for call in (lambda: _linear.linear_forward(m, m, None, m.copy()),\n"
                    "             lambda: _linear.add_scaled(m.copy(), m, 1.0),\n"
                    "             lambda: _linear.bias_backward(m, m[0].copy(), False)):\n"
                    "    try:\n"
                    "        call()\n"
                    "    except RuntimeError as exc:\n"
                    "        print('RuntimeError', exc)\n")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "(None, 0)"
    assert len(lines) == 4 and all(line.startswith("RuntimeError no BLAS chosen yet")
                                   for line in lines[1:]), result.stdout
