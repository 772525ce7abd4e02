"""`python -m cygrad COMMAND`: info, demo, bench, explain.

Each command lives in its own module with `add_arguments(parser)` and `run(args) -> int`;
they are imported only when chosen, so `info` stays fast and needs nothing optional.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

# command -> (module, one-line help)
COMMANDS = {
    "info": ("cygrad.runtime", "print version, backend, threads, BLAS"),
    "demo": ("cygrad.demo", "train a small MLP on a generated spiral data set"),
    "bench": ("cygrad.bench", "time cygrad against NumPy (and PyTorch, if installed)"),
    "explain": ("cygrad.explain", "show the forward and backward pass of an expression"),
}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cygrad", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(module=module_name)
        importlib.import_module(module_name).add_arguments(command)
    args = parser.parse_args(argv)
    return importlib.import_module(args.module).run(args)


if __name__ == "__main__":
    sys.exit(main())
