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


PORTABLE_PROGRAM = r"""
#include <stdio.h>
#include "_sigmoid.h"
int main(void) {
    float x[5] = {-100.0f, -1.0f, 0.0f, 2.0f, 100.0f}, y[5], g[5] = {1, 1, 1, 1, 1}, d[5];
    double xd[3] = {-1.0, 0.0, 3.0}, yd[3];
    cg_sigmoid_f(x, y, 5);
    cg_sigmoid_backward_f(g, y, d, 5, 0);
    cg_sigmoid_d(xd, yd, 3);
    for (int i = 0; i < 5; i++) printf("%.9g %.9g\n", y[i], d[i]);
    for (int i = 0; i < 3; i++) printf("%.17g\n", yd[i]);
    return 0;
}
"""


def test_sigmoid_header_builds_without_target_clones(c_probe):
    """Compilers other than GCC on x86-64 Linux (clang on macOS, MSVC) get the header's
    portable branch, without target_clones: it must compile on its own and compute the
    same sigmoid. Built here by forcing that branch (-U__linux__)."""
    import subprocess

    import numpy as np

    build, program = c_probe("_sigmoid.h", PORTABLE_PROGRAM, "-U__linux__", "-O2")
    assert build.returncode == 0, build.stderr
    lines = subprocess.run([str(program)], capture_output=True, text=True,
                           check=True).stdout.split("\n")
    y, d = np.array([[float(v) for v in line.split()] for line in lines[:5]]).T
    x = np.array([-100.0, -1.0, 0.0, 2.0, 100.0])
    want = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(y, want, rtol=2e-7, atol=1e-30)
    np.testing.assert_allclose(d, want * (1 - want), rtol=1e-6, atol=1e-30)
    yd = np.array([float(v) for v in lines[5:8]])
    np.testing.assert_allclose(yd, 1 / (1 + np.exp(-np.array([-1.0, 0.0, 3.0]))), rtol=1e-15)
