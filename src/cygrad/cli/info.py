"""`python -m cygrad info`: version, backend, threads, BLAS (the facts cygrad.runtime
gathers), one per line."""
from __future__ import annotations

import argparse

from .. import backends, runtime


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`info` takes no options."""


def run(args: argparse.Namespace) -> int:
    facts = {"active backend": backends.get_backend(),
             "backends": ", ".join(backends.available_backends()), **runtime.info()}
    width = max(map(len, facts))
    for key, value in facts.items():
        print(f"{key:<{width}}  {value}")
    return 0
