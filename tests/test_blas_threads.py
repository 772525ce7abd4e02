"""Whose threads run the products' parallel jobs (csrc/_blas_threads.h): cygrad's OpenMP
threads where the BLAS offers it, else the BLAS's own; the results are the same either way,
in a forked child, from several Python threads, and where OpenMP cannot promise a team."""
from __future__ import annotations

import ctypes
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import cygrad
from cygrad import _elementwise, _linear
from cygrad.backends import _blas, reference

NUMPY_BLAS = _blas.find_numpy_blas()
# Big enough that OpenBLAS splits every product into jobs for its threads.
M, K, N = 300, 500, 400


def _offers_callback(path: str) -> bool:
    library = ctypes.CDLL(path)
    return any(hasattr(library, name) for name in _blas._THREADS_SYMBOLS)


def run_python(code: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    import os
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(params=["openmp", "blas"])
def each_pool(request, monkeypatch):
    """The products' jobs on each pool in turn; the process's own choice is put back."""
    monkeypatch.setenv(_blas.THREADS_ENV, request.param)
    _blas.use(_linear, "numpy" if NUMPY_BLAS else "scipy")
    yield _linear.blas_threads()
    monkeypatch.undo()
    _blas.select(_linear)


def test_the_default_pool_is_openmp_where_the_blas_offers_it():
    name, _ = _linear.blas_in_use()
    paths = [NUMPY_BLAS[0]] if name == "numpy" else _blas._scipy_library_files()
    offers = _elementwise.openmp_enabled() and any(_offers_callback(p) for p in paths)
    assert _linear.blas_threads() == ("openmp" if offers else "blas")
    assert cygrad.backends.blas_threads() == _linear.blas_threads()


def test_blas_threads_env_chooses_the_blas_pool():
    result = run_python("from cygrad import _linear; print(_linear.blas_threads())",
                        CYGRAD_BLAS_THREADS="blas")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["blas"]


def test_blas_threads_env_rejects_an_unknown_value():
    result = run_python("import cygrad", CYGRAD_BLAS_THREADS="gpu")
    assert result.returncode != 0
    assert "CYGRAD_BLAS_THREADS: expected one of openmp, blas, got 'gpu'" in result.stderr


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_products_agree_with_the_reference_on_either_pool(each_pool, dtype, rng):
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else {"rtol": 1e-10}
    x, w = rng.standard_normal((M, K)).astype(dtype), rng.standard_normal((N, K)).astype(dtype)
    b, g = rng.standard_normal(N).astype(dtype), rng.standard_normal((M, N)).astype(dtype)
    compiled = cygrad.backends.active()
    np.testing.assert_allclose(compiled.linear_forward(x, w, b),
                               reference.linear_forward(x, w, b), **tol)
    for got, want in zip(compiled.linear_backward(g, x, w), reference.linear_backward(g, x, w)):
        np.testing.assert_allclose(got, want, **tol)
    a, c = rng.standard_normal((M, K)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)
    for got, want in zip(compiled.matmul_backward(g, a, c), reference.matmul_backward(g, a, c)):
        np.testing.assert_allclose(got, want, **tol)
    big = rng.standard_normal((4096, 64)).astype(dtype)
    np.testing.assert_allclose(compiled.bias_backward(big), big.sum(0), **tol)


def test_products_from_several_python_threads_at_once(rng):
    """Each kernel installs the callback while it calls BLAS and removes it after; calls
    from threads that overlap keep each other's results right."""
    x, w = rng.random((M, K)), rng.random((N, K))
    want = x @ w.T
    errors = []

    def work():
        for _ in range(20):
            if not np.allclose(cygrad.kernels.linear_forward(x, w), want):
                errors.append("wrong product")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


FORK = """
    import os
    import numpy as np
    import cygrad
    from cygrad import _linear, kernels
    x = np.random.default_rng(0).random((300, 500))
    s = np.random.default_rng(1).random(1 << 20)
    kernels.linear_forward(x, x)  # the parent's pools have run
    kernels.sigmoid_forward(s)
    pid = os.fork()
    if pid == 0:
        ok = (np.allclose(kernels.linear_forward(x, x), x @ x.T)
              and np.allclose(kernels.sigmoid_forward(s), 1 / (1 + np.exp(-s))))
        print(_linear.blas_threads(), cygrad.get_num_threads(), ok, flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
    print(_linear.blas_threads(), cygrad.get_num_threads() > 0)
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_computes_on_the_fork_safe_pool():
    """GNU OpenMP's pool hangs in a child forked after the parent used it: the child runs
    the loops on one thread and the products on the BLAS's own pool."""
    result = run_python(FORK, timeout=60)
    assert result.returncode == 0, result.stderr
    child, parent = result.stdout.splitlines()
    assert child.split() == ["blas", "1", "True"]
    assert parent.split() == [_linear.blas_threads(), "True"]


@pytest.mark.parametrize("env", [{"OMP_DYNAMIC": "true"}, {"OMP_THREAD_LIMIT": "1"}],
                         ids=["dynamic", "thread-limit"])
def test_products_are_right_where_openmp_cannot_promise_a_team(env):
    """A product's jobs wait for one another, so they must all run at once; where OpenMP
    might give fewer threads they get threads of their own."""
    result = run_python("""
        import numpy as np
        from cygrad import _linear, kernels
        x = np.random.default_rng(0).random((300, 500))
        print(_linear.blas_threads(), np.allclose(kernels.linear_forward(x, x), x @ x.T))
        """, timeout=60, **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1] == "True"


@pytest.mark.skipif(NUMPY_BLAS is None or not _offers_callback(NUMPY_BLAS[0]),
                    reason="needs NumPy's OpenBLAS with a threading callback")
def test_a_callback_someone_else_installed_is_left_alone():
    result = run_python(f"""
        import ctypes
        from cygrad.backends import _blas
        library = ctypes.CDLL({NUMPY_BLAS[0]!r})
        variable = ctypes.c_void_p.in_dll(library, {_blas._CALLBACK_VARIABLE!r})
        print(_blas.threads_setter({NUMPY_BLAS[0]!r}) != 0)
        variable.value = 1  # someone's callback (never called: no product runs here)
        print(_blas.threads_setter({NUMPY_BLAS[0]!r}))
        variable.value = None
        """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "0"]
