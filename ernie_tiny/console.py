"""The ``ernie-tiny`` console script.

``predict`` is served without importing the other commands (they need torch): the
onnxruntime deployment path must run where torch is not installed. Every other
command goes to the full app in :mod:`ernie_tiny.cli`.
"""

from __future__ import annotations

import os
import sys

import typer


def main() -> None:
    # Idle OpenMP threads that spin made torch up to 7x slower on a shared 2-core machine (measured by
    # `bench`: 1792 ms vs 257 ms per batch). The variable only works if set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if len(sys.argv) > 1 and sys.argv[1] == "predict":
        from ernie_tiny.commands.predict import predict

        predict_app = typer.Typer(pretty_exceptions_enable=False, rich_markup_mode=None)  # help printed as written
        predict_app.callback()(lambda: None)  # a callback keeps "predict" a subcommand name
        predict_app.command("predict")(predict)
        predict_app()
        return
    from ernie_tiny.cli import app

    app()


if __name__ == "__main__":
    main()
