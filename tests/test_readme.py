"""The README's example runs as written (it saves a model file: in a temporary folder)."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

import cygrad

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs(tmp_path, monkeypatch):
    pytest.importorskip("safetensors")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "the README has a Python example"
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(blocks[0], str(README), "exec"), scope)  # noqa: S102 (our own README)
    assert math.isfinite(scope["loss"].item())
    saved = cygrad.load(tmp_path / "model.safetensors")
    assert list(saved) == list(scope["model"].state_dict())
