"""Every error path, on both backends: bad arguments are a TypeError or ValueError naming the
argument, raised before anything is written (a failed accumulate=True call loses no
gradient). Then the backend registry, the import-time choice of backend, the fallback when the
compiled module is missing, the thread count and `python -m cygrad info`."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest

import cygrad
from cygrad import backends
from cygrad.backends import reference

# Valid arguments of each kernel (float64 unless a test says otherwise)...
INPUT_SHAPES = {
    "sigmoid_forward": {"x": (4, 3)},
    "sigmoid_backward": {"grad_out": (4, 3), "y": (4, 3)},
    "bias_backward": {"grad_out": (4, 3)},
    "linear_forward": {"x": (4, 3), "w": (5, 3), "b": (5,)},
    "linear_backward": {"grad_out": (4, 5), "x": (4, 3), "w": (5, 3)},
    "matmul_backward": {"grad_out": (4, 5), "a": (4, 3), "b": (3, 5)},
}
# ...and the shapes of their outputs.
OUTPUT_SHAPES = {
    "sigmoid_forward": {"out": (4, 3)},
    "sigmoid_backward": {"out": (4, 3)},
    "bias_backward": {"out": (3,)},
    "linear_forward": {"out": (4, 5)},
    "linear_backward": {"grad_x": (4, 3), "grad_w": (5, 3), "grad_b": (5,)},
    "matmul_backward": {"grad_a": (4, 3), "grad_b": (3, 5)},
}
ACCUMULATING = ["sigmoid_backward", "bias_backward", "linear_backward", "matmul_backward"]
# The argument whose dtype the others are checked against.
LEADING = {"sigmoid_backward": "grad_out", "linear_forward": "x", "linear_backward": "x",
           "matmul_backward": "a"}

INPUTS = [pytest.param(k, a, id=f"{k}-{a}") for k, shapes in INPUT_SHAPES.items()
          for a in shapes]
OUTPUTS = [pytest.param(k, o, id=f"{k}-{o}") for k, shapes in OUTPUT_SHAPES.items()
           for o in shapes]


def valid_inputs(kernel: str, rng, dtype=np.float64) -> dict:
    return {name: rng.uniform(-1, 1, shape).astype(dtype)
            for name, shape in INPUT_SHAPES[kernel].items()}


def call_fails(kernels, kernel: str, args: dict, error: type, match: str, rng):
    """Call `kernel` with `args`, which are wrong somewhere, plus a valid output array for
    every output `args` does not set and accumulate=True where the kernel has it. The call
    must raise `error` matching `match` and leave every output array bit for bit as it was."""
    args = dict(args)
    dtype = next((a.dtype for a in args.values() if isinstance(a, np.ndarray)
                  and a.dtype in (np.float32, np.float64)), np.float64)
    for name, shape in OUTPUT_SHAPES[kernel].items():
        args.setdefault(name, rng.uniform(-1, 1, shape).astype(dtype))
    if kernel in ACCUMULATING:
        args.setdefault("accumulate", True)
    before = {name: args[name].tobytes() for name in OUTPUT_SHAPES[kernel]
              if isinstance(args[name], np.ndarray)}
    with pytest.raises(error, match=match) as info:
        getattr(kernels, kernel)(**args)
    for name, old in before.items():
        assert args[name].tobytes() == old, f"the failed call wrote into {name}"
    return info


# ---------------------------------------------------------------- not an array

@pytest.mark.parametrize("kernel, arg", INPUTS)
def test_input_that_is_not_an_array(kernels, kernel, arg, rng):
    args = valid_inputs(kernel, rng)
    args[arg] = args[arg].tolist()
    call_fails(kernels, kernel, args, TypeError, f"^{arg}: expected a NumPy array", rng)


@pytest.mark.parametrize("kernel, arg", [pytest.param(k, a, id=f"{k}-{a}")
                                         for k, a in LEADING.items()] +
                         [pytest.param("sigmoid_forward", "x", id="sigmoid_forward-x"),
                          pytest.param("bias_backward", "grad_out", id="bias_backward-grad_out")])
def test_input_that_is_none_or_a_number(kernels, kernel, arg, rng):
    for bad in (None, 2.0):
        args = valid_inputs(kernel, rng)
        args[arg] = bad
        call_fails(kernels, kernel, args, TypeError, f"^{arg}: expected a NumPy array", rng)


@pytest.mark.parametrize("kernel, out", OUTPUTS)
def test_output_that_is_not_an_array(kernels, kernel, out, rng):
    args = valid_inputs(kernel, rng)
    args[out] = np.zeros(OUTPUT_SHAPES[kernel][out]).tolist()
    call_fails(kernels, kernel, args, TypeError, f"^{out}: expected a NumPy array", rng)


# ---------------------------------------------------------------------- dtypes

BAD_DTYPES = ["int64", "int32", "float16", "complex128", "bool"]


@pytest.mark.parametrize("bad", BAD_DTYPES)
@pytest.mark.parametrize("kernel, arg", INPUTS)
def test_input_of_a_wrong_dtype(kernels, kernel, arg, bad, rng):
    args = valid_inputs(kernel, rng)
    args[arg] = args[arg].astype(bad)
    info = call_fails(kernels, kernel, args, TypeError, f"^{arg}: expected", rng)
    assert bad in str(info.value)


@pytest.mark.parametrize("bad", BAD_DTYPES + ["float32"])
@pytest.mark.parametrize("kernel, out", OUTPUTS)
def test_output_of_a_wrong_dtype(kernels, kernel, out, bad, rng):
    args = valid_inputs(kernel, rng)  # float64
    args[out] = np.zeros(OUTPUT_SHAPES[kernel][out], bad)
    info = call_fails(kernels, kernel, args, TypeError, f"^{out}: expected float64", rng)
    assert "no silent casting" in str(info.value)


@pytest.mark.parametrize("dtype, other", [(np.float32, np.float64), (np.float64, np.float32)],
                         ids=["float32-with-a-float64", "float64-with-a-float32"])
@pytest.mark.parametrize("kernel, arg", [p for p in INPUTS if p.values[1] !=
                                         LEADING.get(p.values[0], p.values[1])])
def test_mixed_float32_and_float64(kernels, kernel, arg, dtype, other, rng):
    args = valid_inputs(kernel, rng, dtype)
    args[arg] = args[arg].astype(other)
    info = call_fails(kernels, kernel, args, TypeError,
                      f"^{arg}: expected {np.dtype(dtype)}", rng)
    assert "no silent casting" in str(info.value)
    assert f"got {np.dtype(other)}" in str(info.value)


def test_error_message_names_argument_and_both_shapes(kernels):
    g, y = np.zeros((64, 256), np.float32), np.zeros((64, 255), np.float32)
    with pytest.raises(ValueError) as info:
        kernels.sigmoid_backward(g, y)
    assert str(info.value) == ("y: expected float32 of shape (64, 256), "
                               "got float32 of shape (64, 255)")


# ---------------------------------------------------------------------- shapes

# (kernel, argument given a wrong shape, that shape, the argument the error names): an
# argument is checked against those before it, so a wrong leading argument is reported on
# the one that no longer fits it.
SHAPE_CASES = [
    ("sigmoid_backward", "y", (4, 2), "y"), ("sigmoid_backward", "y", (3, 4), "y"),
    ("sigmoid_backward", "y", (4, 3, 1), "y"), ("sigmoid_backward", "y", (12,), "y"),
    ("sigmoid_backward", "grad_out", (4, 2), "y"),
    ("bias_backward", "grad_out", (), "grad_out"),
    ("linear_forward", "x", (), "x"), ("linear_forward", "x", (4, 4), "w"),
    ("linear_forward", "w", (5, 4), "w"), ("linear_forward", "w", (3,), "w"),
    ("linear_forward", "w", (5, 3, 1), "w"), ("linear_forward", "b", (4,), "b"),
    ("linear_forward", "b", (5, 1), "b"), ("linear_forward", "b", (), "b"),
    ("linear_backward", "grad_out", (4, 6), "grad_out"),
    ("linear_backward", "grad_out", (3, 5), "grad_out"),
    ("linear_backward", "grad_out", (5,), "grad_out"),
    ("linear_backward", "grad_out", (2, 2, 5), "grad_out"),
    ("linear_backward", "w", (5, 4), "w"), ("linear_backward", "x", (), "x"),
    ("matmul_backward", "a", (4,), "a"), ("matmul_backward", "a", (2, 4, 3), "a"),
    ("matmul_backward", "a", (4, 4), "b"), ("matmul_backward", "b", (4, 5), "b"),
    ("matmul_backward", "b", (3,), "b"), ("matmul_backward", "grad_out", (4, 6), "grad_out"),
    ("matmul_backward", "grad_out", (5, 4), "grad_out"),
]


@pytest.mark.parametrize("kernel, arg, shape, named", [
    pytest.param(*case, id=f"{case[0]}-{case[1]}-{'x'.join(map(str, case[2])) or 'scalar'}")
    for case in SHAPE_CASES])
def test_input_of_a_wrong_shape(kernels, kernel, arg, shape, named, rng):
    args = valid_inputs(kernel, rng)
    args[arg] = np.array(rng.uniform(-1, 1, shape))  # an array even for shape ()
    call_fails(kernels, kernel, args, ValueError, f"^{named}: expected", rng)


OUT_SHAPE_CASES = [
    ("sigmoid_forward", "out", (3, 4)), ("sigmoid_forward", "out", (12,)),
    ("sigmoid_backward", "out", (4, 3, 1)), ("bias_backward", "out", (4,)),
    ("bias_backward", "out", (1, 3)), ("bias_backward", "out", ()),
    ("linear_forward", "out", (5, 4)), ("linear_forward", "out", (4, 5, 1)),
    ("linear_backward", "grad_x", (3, 4)), ("linear_backward", "grad_w", (3, 5)),
    ("linear_backward", "grad_b", (5, 1)), ("linear_backward", "grad_b", (4,)),
    ("matmul_backward", "grad_a", (3, 4)), ("matmul_backward", "grad_b", (5, 3)),
]


@pytest.mark.parametrize("kernel, out, shape", [
    pytest.param(*case, id=f"{case[0]}-{case[1]}-{'x'.join(map(str, case[2])) or 'scalar'}")
    for case in OUT_SHAPE_CASES])
def test_output_of_a_wrong_shape(kernels, kernel, out, shape, rng):
    args = valid_inputs(kernel, rng)
    args[out] = np.zeros(shape)
    call_fails(kernels, kernel, args, ValueError, f"^{out}: expected float64 of shape", rng)


# ------------------------------------------------- outputs: layout and writability

def bad_output(shape: tuple, layout: str) -> np.ndarray:
    """A float64 output array of the right shape that cannot be written in place."""
    if layout == "fortran":
        a = np.zeros(shape, order="F")
    elif layout == "transposed":
        a = np.zeros(shape[::-1]).T
    elif layout == "strided":
        a = np.zeros(tuple(2 * d for d in shape))[(slice(None, None, 2),) * len(shape)]
    elif layout == "reversed":
        a = np.zeros(shape)[(slice(None, None, -1),) * len(shape)]
    elif layout == "readonly":
        a = np.zeros(shape)
        a.flags.writeable = False
    else:  # unaligned
        a = np.zeros(8 * int(np.prod(shape)) + 1, np.uint8)[1:].view(np.float64).reshape(shape)
        assert not a.flags.aligned
    assert layout in ("readonly", "unaligned") or not a.flags.c_contiguous
    return a


OUT_LAYOUTS = [pytest.param(k, o, layout, id=f"{k}-{o}-{layout}")
               for k, shapes in OUTPUT_SHAPES.items() for o, shape in shapes.items()
               for layout in ["fortran", "transposed", "strided", "reversed", "readonly",
                              "unaligned"]
               if len(shape) > 1 or layout not in ("fortran", "transposed")]


@pytest.mark.parametrize("kernel, out, layout", OUT_LAYOUTS)
def test_output_that_cannot_be_written_in_place(kernels, kernel, out, layout, rng):
    args = valid_inputs(kernel, rng)
    args[out] = bad_output(OUTPUT_SHAPES[kernel][out], layout)
    call_fails(kernels, kernel, args, ValueError, f"^{out}: must be", rng)


def test_sigmoid_forward_in_place_on_a_read_only_array(kernels):
    x = np.zeros(5)
    x.flags.writeable = False
    with pytest.raises(ValueError, match="^out: must be writable"):
        kernels.sigmoid_forward(x, out=x)
    assert np.all(x == 0)


# ---------------------------------------------------------------------- flags

FLAGS = ([pytest.param(k, "accumulate", id=f"{k}-accumulate") for k in ACCUMULATING] +
         [pytest.param("linear_backward", f, id=f"linear_backward-{f}")
          for f in ("need_grad_x", "need_grad_w", "need_grad_b")] +
         [pytest.param("matmul_backward", f, id=f"matmul_backward-{f}")
          for f in ("need_grad_a", "need_grad_b")])


@pytest.mark.parametrize("value", ["yes", 1, 0, None, 1.0], ids=repr)
@pytest.mark.parametrize("kernel, flag", FLAGS)
def test_flag_that_is_not_a_bool(kernels, kernel, flag, value, rng):
    args = valid_inputs(kernel, rng)
    args[flag] = value
    call_fails(kernels, kernel, args, TypeError, f"^{flag}: expected True or False", rng)


@pytest.mark.parametrize("kernel", ACCUMULATING)
def test_numpy_bools_are_flags(kernels, kernel, rng):
    args = valid_inputs(kernel, rng)
    outs = {name: np.ones(shape) for name, shape in OUTPUT_SHAPES[kernel].items()}
    got = getattr(kernels, kernel)(**args, **outs, accumulate=np.True_)
    want = getattr(reference, kernel)(**args)
    for got_i, want_i in zip(got if isinstance(got, tuple) else (got,),
                             want if isinstance(want, tuple) else (want,)):
        np.testing.assert_allclose(got_i, 1 + want_i, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ the registry

@pytest.fixture
def registry(monkeypatch):
    """Backends registered by a test are forgotten after it."""
    monkeypatch.setattr(backends, "_backends", dict(backends._backends))
    return backends


@pytest.mark.parametrize("name", ["numpy", "", "Cython", None, 3])
def test_unknown_backend_name(name):
    before = cygrad.get_backend()
    known = "known: 'cython', 'reference'"
    with pytest.raises(ValueError, match=f"^backend: unknown name {re.escape(repr(name))}; "
                                         f"{known}$"):
        cygrad.set_backend(name)
    with pytest.raises(ValueError, match=re.escape(known)):
        with cygrad.use_backend(name):
            pass  # pragma: no cover - never entered
    assert cygrad.get_backend() == before


def test_register_a_backend_missing_kernels(registry):
    partial = types.SimpleNamespace(sigmoid_forward=reference.sigmoid_forward,
                                    sigmoid_backward=reference.sigmoid_backward,
                                    linear_forward="not callable")
    with pytest.raises(ValueError, match="^backend: 'partial' lacks the kernel") as info:
        cygrad.register_backend("partial", partial)
    message = str(info.value)
    for missing in ("matmul_backward", "linear_forward", "linear_backward", "bias_backward"):
        assert missing in message
    for present in ("sigmoid_forward", "sigmoid_backward"):
        assert present not in message
    assert "partial" not in backends.available_backends()
    with pytest.raises(ValueError, match="unknown name 'partial'"):
        cygrad.set_backend("partial")


@pytest.mark.parametrize("name", ["", 3, None])
def test_register_a_backend_under_a_bad_name(registry, name):
    with pytest.raises(TypeError, match="^name: expected a non-empty string"):
        cygrad.register_backend(name, reference)


class LoggingBackend:
    """A complete custom backend: the reference's kernels, each call recorded."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, kernel):
        if kernel not in backends.KERNEL_NAMES:
            raise AttributeError(kernel)

        def call(*args, **kwargs):
            self.calls.append(kernel)
            return getattr(reference, kernel)(*args, **kwargs)
        return call


def test_a_registered_backend_runs_the_kernels(registry, rng):
    before = cygrad.get_backend()
    logged = LoggingBackend()
    cygrad.register_backend("logged", logged)
    assert backends.available_backends() == ["cython", "logged", "reference"]
    x = rng.uniform(-1, 1, (4, 3))
    with cygrad.use_backend("logged") as active:
        assert active is logged and cygrad.get_backend() == "logged"
        y = cygrad.kernels.sigmoid_forward(x)
        cygrad.kernels.sigmoid_backward(np.ones_like(y), y)
        cygrad.kernels.linear_backward(np.ones((4, 2)), x, np.ones((2, 3)))
        cygrad.Tensor(x).sigmoid()  # the graph layer runs on the active backend too
    assert logged.calls == ["sigmoid_forward", "sigmoid_backward", "linear_backward",
                            "sigmoid_forward"]
    np.testing.assert_array_equal(y, reference.sigmoid_forward(x))
    assert cygrad.get_backend() == before
    cygrad.set_backend("logged")
    assert cygrad.get_backend() == "logged" and backends.active() is logged


def test_use_backend_nests_and_restores(kernels):
    outer = cygrad.get_backend()
    with cygrad.use_backend("reference") as first:
        assert first is reference and cygrad.get_backend() == "reference"
        with cygrad.use_backend("cython"):
            assert cygrad.get_backend() == "cython"
            with cygrad.use_backend("reference"):
                assert cygrad.get_backend() == "reference"
            assert cygrad.get_backend() == "cython"
        assert cygrad.get_backend() == "reference"
    assert cygrad.get_backend() == outer


def test_use_backend_restores_after_an_exception(kernels):
    outer = cygrad.get_backend()
    other = "reference" if outer == "cython" else "cython"
    with pytest.raises(ZeroDivisionError):
        with cygrad.use_backend(other):
            with cygrad.use_backend(outer):
                assert cygrad.get_backend() == outer
                1 / 0
    assert cygrad.get_backend() == outer
    with pytest.raises(ValueError):
        with cygrad.use_backend(other):
            cygrad.set_backend("no such backend")
    assert cygrad.get_backend() == outer


# ------------------------------------------------------- import time, in a subprocess

def run_python(code: str, tmp_path, **env_vars) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CYGRAD_BACKEND"}
    env.update(env_vars)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", ["reference", "cython"])
@pytest.mark.subprocess
def test_environment_variable_picks_the_backend(name, tmp_path):
    result = run_python("""
        import numpy as np, cygrad
        print(cygrad.get_backend(), cygrad.backends.active().name,
              cygrad.kernels.sigmoid_forward(np.zeros(2))[0])
        """, tmp_path, CYGRAD_BACKEND=name)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [name, name, "0.5"]


@pytest.mark.subprocess
def test_default_backend_is_the_compiled_one(tmp_path):
    result = run_python("import cygrad; print(cygrad.get_backend())", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "cython"


@pytest.mark.subprocess
def test_environment_variable_with_an_unknown_backend(tmp_path):
    """The error names the variable the value came from, and the valid values."""
    result = run_python("import cygrad", tmp_path, CYGRAD_BACKEND="fortran")
    assert result.returncode != 0
    assert ("ValueError: CYGRAD_BACKEND: unknown backend 'fortran'; expected one of "
            "'cython', 'reference' (unset it for the default, 'cython')") in result.stderr


MISSING_COMPILED = """
    import json, sys, warnings
    import numpy as np
    sys.modules[{module!r}] = None  # as if the extension had never been built
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import cygrad
    report = dict(
        warnings=[str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)],
        backend=cygrad.get_backend(),
        sigmoid=float(cygrad.kernels.sigmoid_forward(np.zeros(1))[0]),
        compiled=cygrad.runtime.info()["compiled module"])
    for attempt in (lambda: cygrad.set_backend("cython"),
                    lambda: cygrad.use_backend("cython").__enter__()):
        try:
            attempt()
        except RuntimeError as exc:
            report.setdefault("errors", []).append(str(exc))
    report["after"] = cygrad.get_backend()
    print(json.dumps(report))
    """


@pytest.mark.parametrize("module", ["cygrad._elementwise", "cygrad._linear"])
@pytest.mark.subprocess
def test_without_the_compiled_module(module, tmp_path):
    result = run_python(MISSING_COMPILED.format(module=module), tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report["warnings"]) == 1
    assert "'reference'" in report["warnings"][0] and "pip install" in report["warnings"][0]
    assert report["backend"] == report["after"] == "reference"
    assert report["sigmoid"] == 0.5
    assert report["compiled"].startswith("not loaded")
    assert len(report["errors"]) == 2
    for message in report["errors"]:
        assert "compiled 'cython' backend is not available" in message
        assert "build it with `pip install .`" in message


# ---------------------------------------------------------------- runtime, info

@pytest.mark.parametrize("n", [0, -1, True, 2.0, "2", None], ids=repr)
def test_set_num_threads_rejects_non_positive_ints(n):
    before = cygrad.get_num_threads()
    with pytest.raises(ValueError, match="^n: expected a positive int"):
        cygrad.set_num_threads(n)
    assert cygrad.get_num_threads() == before


def test_set_num_threads_round_trips():
    cygrad.set_num_threads(3)
    expected = 3 if cygrad.runtime.info()["OpenMP"] == "on" else 1
    assert cygrad.get_num_threads() == expected


@pytest.mark.parametrize("env_backend, shown", [(None, "cython"), ("reference", "reference")])
@pytest.mark.subprocess
def test_info_command(env_backend, shown, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CYGRAD_BACKEND"}
    if env_backend:
        env["CYGRAD_BACKEND"] = env_backend
    result = subprocess.run([sys.executable, "-m", "cygrad", "info"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert re.search(f"^active backend +{shown}$", result.stdout, re.MULTILINE), result.stdout
    assert re.search("^compiled module +loaded$", result.stdout, re.MULTILINE), result.stdout
