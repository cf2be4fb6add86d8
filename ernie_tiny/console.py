"""The ``ernie-tiny`` console script.

``predict``, ``serve`` and ``embed`` run without importing the other commands (they need
torch): the onnxruntime deployment path must run where torch is not installed. Every other
command goes to the full app in :mod:`ernie_tiny.cli`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import typer


TORCH_FREE_COMMANDS = ("predict", "serve", "embed")


def torch_free_command(name: str) -> Callable:
    """The typer function of a command of the onnxruntime path, imported without the full app."""
    if name == "serve":
        from ernie_tiny.commands.serve import serve

        return serve
    if name == "embed":
        from ernie_tiny.commands.embed import embed

        return embed
    from ernie_tiny.commands.predict import predict

    return predict


def main() -> None:
    # Idle OpenMP threads that spin made torch up to 7x slower on a shared 2-core machine (measured by
    # `bench`: 1792 ms vs 257 ms per batch). The variable only works if set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if len(sys.argv) > 1 and sys.argv[1] in TORCH_FREE_COMMANDS:
        fast_app = typer.Typer(pretty_exceptions_enable=False, rich_markup_mode=None)  # help printed as written
        fast_app.callback()(lambda: None)  # a callback keeps the command a subcommand name
        fast_app.command(sys.argv[1])(torch_free_command(sys.argv[1]))
        fast_app()
        return
    from ernie_tiny.cli import app

    app()


if __name__ == "__main__":
    main()
