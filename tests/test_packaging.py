"""The installed distribution and the package agree on what they are."""
from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest

import cygrad


def _distribution() -> metadata.Distribution:
    try:
        return metadata.distribution("cygrad")
    except metadata.PackageNotFoundError:
        pytest.skip("cygrad is imported from a source tree, not an installed distribution")


def test_version_matches_distribution_metadata():
    assert cygrad.__version__ == _distribution().version


def test_distribution_metadata_is_complete():
    meta = _distribution().metadata
    assert meta["Name"] == "cygrad"
    assert meta["Requires-Python"]
    assert meta.get("License-Expression") == "MIT" or meta.get("License") == "MIT"
    requires = _distribution().requires or []
    numpy = [r.replace(" ", "") for r in requires if r.startswith("numpy")]
    assert numpy and ">=" in numpy[0] and "<" in numpy[0], numpy


def test_type_marker_is_installed():
    dist = _distribution()
    if not dist.locate_file("cygrad/__init__.py").exists():
        # an editable install lists no package files: the marker must sit in the package
        assert (Path(cygrad.__file__).parent / "py.typed").is_file()
        return
    files = dist.files or []
    assert any(str(f).replace("\\", "/").endswith("cygrad/py.typed") for f in files)


def test_imported_package_is_the_distributions():
    """Run against an installed wheel or sdist, the tests import that copy."""
    installed = _distribution().locate_file("cygrad/__init__.py")
    if not installed.exists():  # an editable install: the package lives in the source tree
        pytest.skip("editable install")
    assert installed.resolve() == type(installed)(cygrad.__file__).resolve()
