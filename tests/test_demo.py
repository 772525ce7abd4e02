"""`python -m cygrad demo`: the spiral data, training to > 95% on each backend, the CLI."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import cygrad
from cygrad.cli.demo import TrainResult, build_model, make_spiral, train

BACKENDS = ["cython", "reference"]


def _run(*args: str, cwd: object = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)


def test_make_spiral_shapes_and_labels():
    X, y = make_spiral(50, 4, seed=1)
    assert X.shape == (200, 2) and X.dtype == np.float64
    assert y.shape == (200,) and y.dtype.kind == "i"
    np.testing.assert_array_equal(np.bincount(y), [50] * 4)
    assert np.all(np.hypot(X[:, 0], X[:, 1]) <= 1 + 1e-12)  # radius 0..1


def test_make_spiral_is_deterministic():
    X1, y1 = make_spiral(100, 3, seed=7)
    X2, y2 = make_spiral(100, 3, seed=7)
    X3, _ = make_spiral(100, 3, seed=8)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(X1, X3)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("backend", BACKENDS)
def test_train_reaches_95_percent(backend, seed):
    X, y = make_spiral(100, 3, seed=seed)
    before = cygrad.get_backend()
    result = train(build_model(hidden=100, classes=3, seed=seed), X, y, steps=150,
                   backend=backend)
    assert isinstance(result, TrainResult)
    assert result.backend == backend
    assert len(result.losses) == 150 and result.losses[-1] < result.losses[0]
    assert result.accuracy > 0.95
    assert result.seconds > 0
    assert cygrad.get_backend() == before


def test_backends_train_alike():
    X, y = make_spiral(100, 3, seed=0)
    results = [train(build_model(seed=0, dtype=np.float64), X, y, steps=50, backend=b)
               for b in BACKENDS]
    np.testing.assert_allclose(results[0].losses, results[1].losses, rtol=1e-9)


@pytest.mark.slow
@pytest.mark.subprocess
def test_cli_demo_quiet():
    proc = _run("-m", "cygrad", "demo", "--quiet", "--steps", "200", "--backend", "cython")
    assert proc.returncode == 0, proc.stderr
    assert "final training accuracy" in proc.stdout and "%" in proc.stdout
    assert "cython" in proc.stdout
    assert "it/s" not in proc.stderr  # --quiet: no progress bar


@pytest.mark.subprocess
def test_cli_demo_fails_below_95_percent():
    proc = _run("-m", "cygrad", "demo", "--quiet", "--steps", "3")
    assert proc.returncode == 1
    assert "below 95%" in proc.stderr


@pytest.mark.subprocess
def test_cli_plot_without_matplotlib_exits_1(tmp_path):
    # matplotlib may be installed: a None entry in sys.modules makes importing it fail.
    code = ("import sys; sys.modules['matplotlib'] = None; import cygrad.__main__ as m; "
            "sys.exit(m.main(['demo', '--quiet', '--plot', 'never-written.png']))")
    proc = _run("-c", code, cwd=tmp_path)
    assert proc.returncode == 1
    assert "matplotlib" in proc.stderr and "pip install" in proc.stderr
    assert "final training accuracy" not in proc.stdout  # it stopped before training
    assert not (tmp_path / "never-written.png").exists()


@pytest.mark.slow
@pytest.mark.subprocess
def test_cli_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "spiral.png"
    proc = _run("-m", "cygrad", "demo", "--quiet", "--steps", "200", "--plot", str(path))
    assert proc.returncode == 0, proc.stderr
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
