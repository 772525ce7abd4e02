"""Shared fixtures: a seeded generator, and process-wide state put back after every test."""
from __future__ import annotations

import shutil
import subprocess
import sysconfig
from pathlib import Path

import numpy as np
import pytest

import cygrad
from cygrad import runtime

SEED = 20240611


@pytest.fixture
def rng() -> np.random.Generator:
    # A fixed seed: a failure reproduces with the same numbers.
    return np.random.default_rng(SEED)


@pytest.fixture(autouse=True)
def _restore_global_state():
    """The active backend and the thread count are process-wide: a test that changes
    them must not change the tests after it."""
    backend, threads = cygrad.get_backend(), cygrad.get_num_threads()
    yield
    cygrad.set_backend(backend)
    cygrad.set_num_threads(threads)


BACKENDS = ["cython", "reference"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Each backend in turn, by name: the graph layer and `cygrad.kernels` run on it."""
    with cygrad.use_backend(request.param):
        yield request.param


@pytest.fixture(params=BACKENDS)
def kernels(request):
    """`cygrad.kernels` running on each backend in turn (restored by the fixture above)."""
    cygrad.set_backend(request.param)
    return cygrad.kernels


# The BLAS libraries the products can run on here: SciPy's always, NumPy's where found.
BLAS_CHOICES = ["scipy"] + (["numpy"] if runtime.find_numpy_blas() else [])


@pytest.fixture(params=BLAS_CHOICES)
def each_blas(request):
    """The compiled products routed through each BLAS in turn; the process's own choice is
    put back afterwards."""
    before = runtime.blas_in_use()
    runtime.use_blas(request.param)
    yield request.param
    runtime.use_blas(before)


@pytest.fixture
def c_probe(tmp_path):
    """build(header, source, *flags) compiles a C program against csrc/`header` with -Wall
    -Werror, returning (the compiler's CompletedProcess, the program's path); skips where
    there is no C compiler."""
    header_dir = Path(__file__).resolve().parents[1] / "csrc"
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]

    def build(header: str, source: str, *flags: str):
        assert (header_dir / header).is_file(), "csrc/ ships with the tests (sdist)"
        if shutil.which(cc) is None:
            pytest.skip(f"no C compiler ({cc}) to build the probe with")
        path, program = tmp_path / "probe.c", tmp_path / "probe"
        path.write_text(source)
        result = subprocess.run([cc, *flags, "-Wall", "-Werror", "-Wno-unused-function",
                                 f"-I{header_dir}", str(path), "-o", str(program), "-lm"],
                                capture_output=True, text=True)
        return result, program

    build.cc = cc
    return build
