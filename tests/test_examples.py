"""The examples run as a user runs them (a subprocess) and reach what they promise."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits.py"
CYGRAD_LINE = re.compile(r"^cygrad +test accuracy (\d+\.\d+)% .*\(reloaded from safetensors: "
                         r"(\d+\.\d+)%\)$", re.MULTILINE)


def _run(*args: str, backend: str = "cython") -> str:
    env = dict(os.environ, CYGRAD_BACKEND=backend)
    done = subprocess.run([sys.executable, str(DIGITS), *args], capture_output=True,
                          text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
@pytest.mark.subprocess
def test_digits_reaches_96_percent_and_reloads_the_same_model(backend):
    pytest.importorskip("sklearn")
    pytest.importorskip("safetensors")
    out = _run("--no-torch", backend=backend)
    assert f"cygrad backend {backend}" in out
    found = CYGRAD_LINE.search(out)
    assert found, out
    accuracy, reloaded = (float(v) for v in found.groups())
    assert accuracy >= 96.0, out
    assert reloaded == accuracy


@pytest.mark.slow
@pytest.mark.subprocess
def test_digits_compares_with_torch_and_scikit_learn(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("safetensors")
    pytest.importorskip("torch")
    saved = tmp_path / "digits.safetensors"
    out = _run("--epochs", "2", "--threads", "1", "--compare-sklearn", "--save", str(saved))
    assert CYGRAD_LINE.search(out), out
    for name in ("torch", "sklearn  MLPClassifier"):
        found = re.search(rf"^{name} +test accuracy (\d+\.\d+)% +\d+\.\d ms/epoch", out,
                          re.MULTILINE)
        assert found and 50.0 < float(found.group(1)) <= 100.0, out
    assert saved.stat().st_size > 64 * 128 * 8  # the float64 weights are in the file
