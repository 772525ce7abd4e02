"""`python -m cygrad info`: version, backends, threads, BLAS, one fact a line."""
from __future__ import annotations

import argparse
from typing import Dict

from .. import backends, runtime


def facts() -> Dict[str, str]:
    """What `info` prints: the version, the backends (active and available), then the
    runtime's facts (cygrad.runtime.info(): compiled module, threads, BLAS, versions)."""
    found = runtime.info()
    return {"cygrad": found.pop("cygrad"), "active backend": backends.get_backend(),
            "backends": ", ".join(backends.available_backends()), **found}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`info` takes no options."""


def run(args: argparse.Namespace) -> int:
    shown = facts()
    width = max(map(len, shown))
    for key, value in shown.items():
        print(f"{key:<{width}}  {value}")
    return 0
