"""The command-line grammar the entry points share: exit codes and the `list` subcommand.

`python -m empirics.train list activations` and `python -m empirics.montecarlo list activations`
print the registry through `list_activations`. Every `main()` returns one of the exit codes.
"""

from __future__ import annotations

import sys
from typing import TextIO

EXIT_OK = 0  # done, every result passed
EXIT_FAILED = 1  # a result that fails: a `fail` verdict, a diverged run, data not installed
EXIT_BAD_INPUT = 2  # bad input, refused before any compute (argparse exits with it too)


def list_activations(stream: TextIO | None = None) -> int:
    """Print every registered activation with its expression, and the spec forms accepted."""
    from theory import registry

    stream = stream or sys.stdout
    for name in registry.activation_names():
        print(f"{name:<16} {registry.get_activation(name).expr}", file=stream)
    print("also: NAME=EXPR (an expression in x), families as leaky_relu:slope=0.2", file=stream)
    return EXIT_OK
