"""Whose threads run the products' parallel jobs (csrc/_blas_threads.h): the BLAS's own by
default, cygrad's OpenMP threads after the opt-in (cygrad.runtime.share_threads) where the
BLAS offers it; the results are the same either way, in a forked child, from several Python
threads, and where OpenMP cannot promise a team."""
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
from cygrad import runtime
from cygrad.backends import reference

NUMPY_BLAS = runtime.find_numpy_blas()
# Big enough that OpenBLAS splits every product into jobs for its threads.
M, K, N = 300, 500, 400


def _offers_callback(path: str) -> bool:
    library = ctypes.CDLL(path)
    return any(hasattr(library, name) for name in runtime._THREADS_SYMBOLS)


def run_python(code: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    import os
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(params=["openmp", "blas"])
def each_pool(request):
    """The products' jobs on each pool in turn (shared, and the default); the default is
    put back."""
    runtime.share_threads(request.param == "openmp")
    yield _linear.blas_threads()
    runtime.share_threads(False)


def _offered() -> bool:
    """Whether the BLAS in use can hand its jobs to cygrad's OpenMP threads."""
    name = runtime.blas_in_use()
    if name == "numpy":
        paths = [NUMPY_BLAS[0]]
    else:
        paths = runtime._library_files(__import__("scipy").__file__, "scipy")
    return _elementwise.openmp_enabled() and any(_offers_callback(p) for p in paths)


def test_the_default_pool_is_the_blas_own_and_sharing_is_opt_in():
    assert not runtime.threads_shared()
    assert _linear.blas_threads() == runtime.blas_threads() == "blas"
    try:
        assert runtime.share_threads() == _offered()
        assert runtime.threads_shared()
        assert _linear.blas_threads() == ("openmp" if _offered() else "blas")
    finally:
        assert runtime.share_threads(False) is False
    assert _linear.blas_threads() == "blas"


@pytest.mark.parametrize("value, shared", [("1", True), ("0", False), ("", False)])
@pytest.mark.subprocess
def test_share_threads_env_opts_in(value, shared):
    result = run_python("from cygrad import _linear, runtime; "
                        "print(_linear.blas_threads(), runtime.threads_shared())",
                        CYGRAD_SHARE_THREADS=value)
    assert result.returncode == 0, result.stderr
    pool = "openmp" if shared and _offered() else "blas"
    assert result.stdout.split() == [pool, str(shared)]


@pytest.mark.subprocess
def test_share_threads_env_rejects_an_unknown_value():
    result = run_python("import cygrad", CYGRAD_SHARE_THREADS="gpu")
    assert result.returncode != 0
    assert "CYGRAD_SHARE_THREADS: expected one of 0, 1, got 'gpu'" in result.stderr


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


def test_products_from_several_python_threads_at_once(each_pool, rng):
    """Products of two kinds (a layer's forward, its weight's gradient) from several
    Python threads at once, on each pool: every result is right. (Run together, the jobs
    of two products overwrite each other's OpenBLAS buffers: the shared pool takes one
    product's jobs at a time, as OpenBLAS's own pool does.)"""
    x, w, g = rng.random((M, K)), rng.random((N, K)), rng.random((M, N))
    want_forward = np.einsum("ik,jk->ij", x, w)  # no BLAS
    want_grad_w = np.einsum("ij,ik->jk", g, x)
    errors = []

    def work():
        for _ in range(10):
            if not np.allclose(cygrad.kernels.linear_forward(x, w), want_forward):
                errors.append("wrong forward")
            _, grad_w, _ = cygrad.kernels.linear_backward(g, x, w, need_grad_x=False,
                                                          need_grad_b=False)
            if not np.allclose(grad_w, want_grad_w):
                errors.append("wrong weight gradient")

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
@pytest.mark.subprocess
def test_a_forked_child_computes_on_the_fork_safe_pool():
    """GNU OpenMP's pool hangs in a child forked after the parent used it: the child runs
    the loops on one thread and the products on the BLAS's own pool."""
    result = run_python(FORK, timeout=60, CYGRAD_SHARE_THREADS="1")
    assert result.returncode == 0, result.stderr
    child, parent = result.stdout.splitlines()
    assert child.split() == ["blas", "1", "True"]
    assert parent.split() == ["openmp" if _offered() else "blas", "True"]


@pytest.mark.parametrize("env", [{"OMP_DYNAMIC": "true"}, {"OMP_THREAD_LIMIT": "1"}],
                         ids=["dynamic", "thread-limit"])
@pytest.mark.subprocess
def test_products_are_right_where_openmp_cannot_promise_a_team(env):
    """A product's jobs wait for one another, so they must all run at once; where OpenMP
    might give fewer threads they get threads of their own."""
    result = run_python("""
        import numpy as np
        from cygrad import _linear, kernels
        x = np.random.default_rng(0).random((300, 500))
        print(_linear.blas_threads(), np.allclose(kernels.linear_forward(x, x), x @ x.T))
        """, timeout=60, CYGRAD_SHARE_THREADS="1", **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1] == "True"


@pytest.mark.skipif(NUMPY_BLAS is None or not _offers_callback(NUMPY_BLAS[0]),
                    reason="needs NumPy's OpenBLAS with a threading callback")
@pytest.mark.subprocess
def test_a_callback_someone_else_installed_is_left_alone():
    result = run_python(f"""
        import ctypes
        from cygrad import runtime
        library = ctypes.CDLL({NUMPY_BLAS[0]!r})
        from cygrad import _linear
        variable = ctypes.c_void_p.in_dll(library, {runtime._CALLBACK_VARIABLE!r})
        ours = _linear.threads_callback()
        print(variable.value == ours, runtime._threads_setter({NUMPY_BLAS[0]!r}, ours) != 0)
        variable.value = 1  # someone's callback (never called: no product runs here)
        print(runtime._threads_setter({NUMPY_BLAS[0]!r}, ours))
        variable.value = ours
        """, CYGRAD_SHARE_THREADS="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "0"]


# A probe of csrc/_blas_threads.h on its own: a stand-in OpenBLAS whose jobs wait for one
# another, as a product's jobs do, so they finish only if they all run at once.
PROBE = r"""
#include <stdio.h>
#include "_blas_threads.h"

static cg_threads_callback_t installed = NULL;
static void set_callback(cg_threads_callback_t callback) { installed = callback; }

#define JOBS 4
static volatile int arrived[JOBS];
static int done[JOBS];

static void job(int index, void *data, int extra) {
    int i = *(int *)data, all, spins = 0;
    (void)index; (void)extra;
    __atomic_store_n(&arrived[i], 1, __ATOMIC_SEQ_CST);
    do {  /* wait for every other job: a team smaller than JOBS never gets past here */
        all = 1;
        for (int j = 0; j < JOBS; j++) all &= __atomic_load_n(&arrived[j], __ATOMIC_SEQ_CST);
    } while (!all && ++spins < 200000000);
    done[i] = all;
}

static int run(void) {
    int data[JOBS], ok = 1;
    for (int i = 0; i < JOBS; i++) { data[i] = i; arrived[i] = 0; done[i] = 0; }
    if (!installed) return -1;  /* OpenBLAS would use its own threads */
    installed(1, job, JOBS, sizeof(int), data, 0);
    for (int i = 0; i < JOBS; i++) ok &= done[i];
    return ok;
}

static void both(void) {
    printf("%d %d\n", cg_blas_threads_in_use(), run());      /* an OpenMP team */
    printf("%d\n", installed == (cg_threads_callback_t)cg_blas_threads_callback());
#ifdef _OPENMP
    int nested = 0;
    #pragma omp parallel num_threads(2)
    {
        #pragma omp master
        nested = run();  /* inside an active region: threads of its own */
    }
    printf("%d\n", nested);
#else
    printf("1\n");
#endif
}

#ifdef _OPENMP
void GOMP_parallel(void (*)(void *), void *, unsigned, unsigned);
#endif

int main(void) {
    cg_blas_threads_use((void *)set_callback);
    both();
#ifdef _OPENMP
    /* The same runtime again, reached through the entry points the torch adapter passes. */
    void *fns[7] = {(void *)GOMP_parallel, (void *)omp_get_thread_num,
                    (void *)omp_get_num_threads, (void *)omp_get_active_level,
                    (void *)omp_get_max_active_levels, (void *)omp_get_dynamic,
                    (void *)omp_get_thread_limit};
    cg_use_openmp_runtime(fns);
#endif
    both();
    return 0;
}
"""


@pytest.mark.parametrize("openmp", [True, False], ids=["openmp", "no-openmp"])
def test_the_threads_header_runs_every_job_at_once(c_probe, openmp):
    """Run with OpenMP, the jobs of one call all finish (so they ran concurrently), both on
    an OpenMP team and, inside an active parallel region, on threads of their own; the
    callback installed is the one cygrad reports as its own. The same holds with the team
    started through another runtime's entry points (cg_use_openmp_runtime). Without
    OpenMP the header compiles to stubs that leave the BLAS's own threading alone."""
    flags = ["-fopenmp", "-pthread"] if openmp else []
    build, program = c_probe("_blas_threads.h", PROBE, "-O1", *flags)
    if openmp and build.returncode != 0 and "openmp" in build.stderr.lower():
        pytest.skip(f"{c_probe.cc} has no OpenMP")
    assert build.returncode == 0, build.stderr
    lines = subprocess.run([str(program)], capture_output=True, text=True, timeout=60,
                           check=True).stdout.split()
    assert lines == (["1", "1", "1", "1"] if openmp else ["0", "-1", "1", "1"]) * 2


def test_use_openmp_runtime_rejects_bad_addresses():
    for module in (_elementwise, _linear):
        for bad in (None, (1, 2, 3), (0,) * 7, ("a",) * 7):
            with pytest.raises(ValueError, match="seven nonzero int addresses"):
                module.use_openmp_runtime(bad)


OTHER_RUNTIME = """
    import ctypes, shutil
    import numpy as np
    import cygrad
    from cygrad import _elementwise, _linear, kernels
    from cygrad import runtime
    cygrad.set_num_threads(2)  # parallel loops even on one core
    ours = [l.split()[-1] for l in open('/proc/self/maps') if 'libgomp' in l]
    copy = shutil.copy(ours[0], {tmp!r} + "/libgomp-copy.so.1")
    ctypes.CDLL(copy)  # a file of its own: a second, separate OpenMP runtime
    theirs = runtime._openmp_entry_points(copy)
    assert theirs[1] != runtime._openmp_entry_points(_linear.__file__)[1]
    _elementwise.use_openmp_runtime(theirs)
    _linear.use_openmp_runtime(theirs)
    rng = np.random.default_rng(0)
    s, x, w = rng.random(1 << 20), rng.random((300, 500)), rng.random((400, 500))
    print(np.allclose(kernels.sigmoid_forward(s), 1 / (1 + np.exp(-s))),
          np.allclose(kernels.sigmoid_backward(s, s), s * s * (1 - s)),
          np.allclose(kernels.linear_forward(x, w), x @ w.T))
    _elementwise.use_openmp_runtime(())  # back to cygrad's own
    _linear.use_openmp_runtime(())
    print(np.allclose(kernels.sigmoid_forward(s), 1 / (1 + np.exp(-s))),
          np.allclose(kernels.linear_forward(x, w), x @ w.T))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
@pytest.mark.skipif(not _elementwise.openmp_enabled(), reason="a build without OpenMP")
@pytest.mark.subprocess
def test_loops_and_products_run_on_another_openmp_runtime(tmp_path):
    """What share_threads() does where PyTorch's OpenMP runtime is not cygrad's: every
    parallel region of cygrad's starts on the other runtime's team, with the same results,
    until it is told to use its own again. The other runtime here is a second copy of
    cygrad's own libgomp."""
    result = run_python(OTHER_RUNTIME.format(tmp=str(tmp_path)), timeout=60,
                        OPENBLAS_NUM_THREADS="2",  # products in two jobs even on one core
                        CYGRAD_SHARE_THREADS="1")  # and those jobs on the OpenMP team
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True"] * 5


SMALL_WORK = 1 << 18  # csrc/_runtime.h's CG_SMALL_WORK

TEAMS = """
    import json, os
    import numpy as np
    import cygrad
    from cygrad import kernels, runtime
    cygrad.set_num_threads(2)
    rng = np.random.default_rng(0)

    def threads():
        return len(os.listdir("/proc/self/task"))

    start = threads()
    # Batch 1 through a 784-256 layer: two matrix-vector products, the bias gradient and
    # the optimizer's update on the 200K weights, all below the small-work threshold.
    x, w = rng.random((1, 784), np.float32), rng.random((256, 784), np.float32)
    b, g = rng.random(256, np.float32), rng.random((1, 256), np.float32)
    for _ in range(3):
        y = kernels.linear_forward(x, w, b)
        grad_x, grad_w, grad_b = kernels.linear_backward(g, x, w)
        cygrad.backends.active().add_scaled(w, grad_w, -0.1)
    small = threads() - start
    big = rng.random((600, 600))
    kernels.linear_forward(big, big)  # a product OpenBLAS splits: a team starts
    print(json.dumps(dict(small=small, big=threads() - start, pool=runtime.blas_threads())))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/task")
@pytest.mark.skipif(not _elementwise.openmp_enabled(), reason="a build without OpenMP")
@pytest.mark.subprocess
def test_small_products_start_no_team():
    """With the jobs on cygrad's OpenMP threads (where a new team shows as new threads), a
    batch-1 step's products and update start none; a large product does."""
    result = run_python(TEAMS, timeout=60, CYGRAD_SHARE_THREADS="1", OPENBLAS_NUM_THREADS="2")
    assert result.returncode == 0, result.stderr
    report = __import__("json").loads(result.stdout)
    if report["pool"] != "openmp":
        pytest.skip("this BLAS cannot hand its jobs to cygrad's threads")
    assert report["small"] == 0
    assert report["big"] >= 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [SMALL_WORK - 1, SMALL_WORK, SMALL_WORK + 1])
def test_products_on_both_sides_of_the_small_work_threshold(size, dtype, rng, each_blas):
    """Matrix-vector products, bias gradients and updates agree with the reference just
    below the threshold (plain loops) and at or above it (the BLAS)."""
    tol = {"rtol": 2e-4, "atol": 1e-3} if dtype == np.float32 else {"rtol": 1e-10}
    rows = 512
    cols = size // rows + (1 if size % rows else 0)
    w = rng.standard_normal((cols, rows)).astype(dtype)
    x = rng.standard_normal((1, rows)).astype(dtype)
    g = rng.standard_normal((1, cols)).astype(dtype)
    compiled = cygrad.backends._backends["cython"]
    np.testing.assert_allclose(compiled.linear_forward(x, w), reference.linear_forward(x, w),
                               **tol)
    for got, want in zip(compiled.linear_backward(g, x, w), reference.linear_backward(g, x, w)):
        np.testing.assert_allclose(got, want, **tol)
    column = rng.standard_normal((size, 1)).astype(dtype)  # one column: gemv over rows
    np.testing.assert_allclose(compiled.bias_backward(column), column.sum(0), **tol)
    p, d = rng.standard_normal(size).astype(dtype), rng.standard_normal(size).astype(dtype)
    want = p + np.asarray(-0.5, dtype) * d
    compiled.add_scaled(p, d, -0.5)
    np.testing.assert_allclose(p, want, **tol)
