"""`python -m cygrad COMMAND` (or `cygrad COMMAND`): info, demo, bench, explain, soak.

Each command lives in its own module with `add_arguments(parser)` and `run(args) -> int`.
The modules import nothing optional at the top (matplotlib, PyTorch, mpi4py, Graphviz are
imported where a command uses them), so building the parser needs only cygrad's own
dependencies. Every numeric flag is checked by the parser: a bad value is an argparse
error (exit status 2) that names the flag, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import math
import sys
from pathlib import Path
from typing import Callable, List, Optional, TypeVar

from .._version import __version__

T = TypeVar("T", int, float)

# command -> (module, one-line help)
COMMANDS = {
    "info": ("cygrad.cli.info", "print version, backend, threads, BLAS"),
    "demo": ("cygrad.cli.demo", "train a small MLP on a generated spiral data set"),
    "bench": ("cygrad.cli.bench", "time cygrad against NumPy (and PyTorch, if installed)"),
    "explain": ("cygrad.cli.explain", "show the forward and backward pass of an expression"),
    "soak": ("cygrad.cli.soak", "train for many steps and check that memory does not grow"),
}


# -- argument types: a bad value raises ArgumentTypeError, which argparse reports as
#    "argument --lr: expected a finite number > 0, got 'nan'" with exit status 2.

def positive_int(text: str) -> int:
    """An int >= 1 (a count: steps, units)."""
    return _number(text, int, "an integer >= 1", lambda v: v >= 1)


def non_negative_int(text: str) -> int:
    """An int >= 0 (a seed, a number of warm-up steps)."""
    return _number(text, int, "an integer >= 0", lambda v: v >= 0)


def positive_float(text: str) -> float:
    """A finite float > 0 (a learning rate): nan, inf, 0 and negatives are refused."""
    return _number(text, float, "a finite number > 0", lambda v: math.isfinite(v) and v > 0)


def non_negative_float(text: str) -> float:
    """A finite float >= 0 (a limit)."""
    return _number(text, float, "a finite number >= 0", lambda v: math.isfinite(v) and v >= 0)


def output_file(text: str) -> str:
    """A file to write, in a folder that exists: checked before a command runs for
    minutes and then fails to save its result."""
    folder = Path(text).parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"the folder {str(folder)!r} of {text!r} does not "
                                         "exist")
    return text


def _number(text: str, convert: Callable[[str], T], expected: str,
            valid: Callable[[T], bool]) -> T:
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not valid(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def _prog() -> str:
    # `python -m cygrad` runs __main__.py; the console script is named `cygrad`.
    return "python -m cygrad" if Path(sys.argv[0]).name == "__main__.py" else "cygrad"


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per command."""
    parser = argparse.ArgumentParser(prog=_prog(), description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"cygrad {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(module=module_name)
        importlib.import_module(module_name).add_arguments(command)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Parse `argv` (default: sys.argv[1:]), run the command, return its exit status."""
    args = build_parser().parse_args(argv)
    return importlib.import_module(args.module).run(args)
