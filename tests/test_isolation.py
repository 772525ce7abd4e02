"""`import cygrad` changes nothing outside cygrad: NumPy's products (their results, and the
OpenBLAS threads that run them), OpenBLAS's thread settings and the environment are the
same before and after importing cygrad and running a training step. Sharing one thread pool
is an opt-in (`cygrad.runtime.share_threads()`, `CYGRAD_SHARE_THREADS=1`).

Each check runs in a fresh interpreter, so that nothing was imported before it looks.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from cygrad import runtime

NUMPY_BLAS = runtime.find_numpy_blas()
needs_numpys_openblas = pytest.mark.skipif(
    NUMPY_BLAS is None, reason="needs NumPy's own OpenBLAS (NumPy's wheels ship it)")

# Prints, as JSON, what NumPy's OpenBLAS and the environment look like before and after
# `import cygrad` and a training step. `{share}` is Python code run after the step.
PROBE = """
    import ctypes, hashlib, json, os, sys
    import numpy as np

    edits = []  # every change to os.environ goes through os.putenv / os.unsetenv
    real_putenv, real_unsetenv = os.putenv, os.unsetenv
    os.putenv = lambda k, v: (edits.append(("set", repr(k), repr(v))), real_putenv(k, v))[1]
    os.unsetenv = lambda k: (edits.append(("unset", repr(k))), real_unsetenv(k))[1]

    library = ctypes.CDLL({path!r})

    def c_environment():
        # The process's own environment block, which a C library could edit behind
        # os.environ's back.
        block = ctypes.POINTER(ctypes.c_char_p).in_dll(ctypes.CDLL(None), "environ")
        entries, i = [], 0
        while block[i]:
            entries.append(block[i].decode(errors="replace"))
            i += 1
        return sorted(entries)

    def numpy_state():
        get = next(getattr(library, n) for n in ("scipy_openblas_get_num_threads64_",
                                                 "openblas_get_num_threads64_")
                   if hasattr(library, n))
        callback = (ctypes.c_void_p.in_dll(library, "openblas_threads_callback_").value
                    if hasattr(library, "openblas_threads_callback_") else "none")
        rng = np.random.default_rng(0)
        a, b = rng.random((300, 500)), rng.random((500, 400))
        products = [hashlib.sha256((x @ y).tobytes()).hexdigest()
                    for x, y in ((a, b), (a.astype(np.float32), b.astype(np.float32)),
                                 (a[:1], b))]
        return dict(threads=get(), callback=callback or 0, products=products,
                    environ=dict(os.environ), c_environ=c_environment(),
                    os_threads=sorted(os.listdir("/proc/self/task")))

    before = numpy_state()

    import cygrad
    from cygrad import functional as F, nn, optim
    rng = np.random.default_rng(1)
    model = nn.Sequential(nn.Linear(500, 64), nn.Sigmoid(), nn.Linear(64, 3))
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    x = cygrad.Tensor(rng.random((300, 500)), dtype=np.float32)
    labels = rng.integers(0, 3, 300)
    for _ in range(2):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), labels)
        loss.backward()
        optimizer.step()
    product = cygrad.kernels.linear_forward(x.data, x.data)  # big enough to be threaded
    {share}
    after = numpy_state()
    print(json.dumps(dict(before=before, after=after, edits=edits,
                          shared=cygrad.runtime.blas_threads(),
                          ours=cygrad._linear.threads_callback(),
                          product=bool(np.allclose(product, x.data @ x.data.T)))))
"""


def _probe(share: str = "", **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("CYGRAD_") and k not in ("OPENBLAS_NUM_THREADS",)}
    # Two BLAS threads even on one core, so that NumPy's products have a pool to watch.
    clean["OPENBLAS_NUM_THREADS"] = "2"
    code = textwrap.dedent(PROBE).format(path=NUMPY_BLAS[0], share=share)
    result = subprocess.run([sys.executable, "-c", code], env={**clean, **env},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


@needs_numpys_openblas
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/task")
@pytest.mark.subprocess
def test_import_and_a_training_step_leave_numpy_and_the_environment_alone():
    report = _probe()
    before, after = report["before"], report["after"]
    assert report["product"]
    assert report["edits"] == []  # not even a temporary change around an import
    assert after["environ"] == before["environ"]
    assert after["c_environ"] == before["c_environ"]
    assert after["threads"] == before["threads"] == 2
    assert before["callback"] in (0, "none") and after["callback"] == before["callback"]
    assert after["products"] == before["products"]  # bit for bit
    assert report["shared"] == "blas"
    # NumPy's products still run on OpenBLAS's own threads, and cygrad's small loops and
    # its products started no thread of their own.
    assert after["os_threads"] == before["os_threads"]


@needs_numpys_openblas
@pytest.mark.parametrize("how", ["environment", "call"])
@pytest.mark.subprocess
def test_sharing_threads_is_an_opt_in_that_can_be_undone(how):
    """CYGRAD_SHARE_THREADS=1 or share_threads() hands OpenBLAS's jobs (NumPy's products
    too) to cygrad's OpenMP threads, with the same results and no environment edits;
    share_threads(False) gives them back to OpenBLAS."""
    if how == "environment":
        report = _probe(CYGRAD_SHARE_THREADS="1")
    else:
        report = _probe("cygrad.runtime.share_threads()")
    before, after = report["before"], report["after"]
    offers = before["callback"] != "none" and report["ours"] != 0
    assert report["shared"] == ("openmp" if offers else "blas")
    if offers:
        assert after["callback"] == report["ours"]
    assert after["products"] == before["products"]
    assert report["edits"] == [] and after["environ"] == before["environ"]

    undone = _probe("cygrad.runtime.share_threads(); cygrad.runtime.share_threads(False)")
    assert undone["shared"] == "blas"
    assert undone["after"]["callback"] == undone["before"]["callback"]


@pytest.mark.subprocess
def test_share_threads_environment_variable_is_checked():
    env = {k: v for k, v in os.environ.items() if not k.startswith("CYGRAD_")}
    result = subprocess.run([sys.executable, "-c", "import cygrad"],
                            env={**env, "CYGRAD_SHARE_THREADS": "yes"},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "CYGRAD_SHARE_THREADS: expected one of 0, 1, got 'yes'" in result.stderr


def test_share_threads_takes_a_bool():
    with pytest.raises(TypeError, match="^enable: expected True or False"):
        runtime.share_threads(1)


def test_the_runtime_imports_nothing_of_cygrad_above_it():
    """The runtime sits below the backends: of cygrad it imports only the compiled
    modules it configures and the version, anywhere in the file."""
    import ast

    tree = ast.parse(open(runtime.__file__).read())
    ours = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            ours |= {f"{node.module}" if node.module else alias.name for alias in node.names}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module] if isinstance(node, ast.ImportFrom) else \
                [alias.name for alias in node.names]
            assert not any(n.startswith("cygrad") for n in names), names
    assert ours <= {"_version", "_elementwise", "_linear"}, ours
