"""``ernie-tiny serve``: the HTTP prediction and embedding server on uvicorn (torch only with --backend torch)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from ernie_tiny.commands.backend_options import (BackendOpt, CudaGraphsOpt, InferenceBackend, PrecisionOpt,
                                                 backend_device)
from ernie_tiny.commands.errors import command_errors
from ernie_tiny.commands.options import DEFAULT_DEVICE, DeviceOpt, MAX_THREADS


def serve(
    model: Annotated[Path, typer.Option("--model", help="Export folder, or a .onnx file inside one "
                                                        "(--backend torch: a checkpoint folder).")],
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8888,
    workers: Annotated[int, typer.Option(min=1, help="Server processes, each with its own model session and batcher.")] = 1,
    max_batch: Annotated[int, typer.Option(min=1, help="Texts per onnxruntime call (1: no batching).")] = 32,
    max_wait_ms: Annotated[float, typer.Option(min=0, help="How long a batch waits for more requests.")] = 5.0,
    max_texts: Annotated[int, typer.Option(min=1, help="Texts per request.")] = 64,
    max_chars: Annotated[int, typer.Option(min=1, help="Characters per text.")] = 2000,
    truncate_long_texts: Annotated[bool, typer.Option("--truncate-long-texts", help="Cut texts past --max-chars "
                                                      "instead of answering 413.")] = False,
    device: DeviceOpt = DEFAULT_DEVICE,
    threads: Annotated[Optional[int], typer.Option(min=1, max=MAX_THREADS, help="onnxruntime intra-op threads per worker "
                                                   "(default: all cores, split between workers).")] = None,
    graceful_timeout: Annotated[float, typer.Option(min=0, help="Seconds SIGTERM waits for requests in flight.")] = 30.0,
    backend: BackendOpt = InferenceBackend.onnxruntime,
    precision: PrecisionOpt = None,
    cuda_graphs: CudaGraphsOpt = True,
    max_batch_tokens: Annotated[Optional[int], typer.Option(min=1, help="A batch's rows x longest row at most, "
                                                            "as well as --max-batch texts (default: no token "
                                                            "budget).")] = None,
) -> None:
    """Serve an exported model over HTTP: /v1/predict, /v1/embed, /v1/model, /healthz, /metrics.

    Example: ernie-tiny serve --model exported/student-int8 --port 8888 --max-batch 32 --max-wait-ms 5
    """
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    with command_errors(also=(RuntimeError,)):  # RuntimeError: onnxruntime's load failures
        try:
            import uvicorn

            from ernie_tiny.deploy.serve import CONFIG_ENVIRONMENT_VARIABLE, LongTexts, ServeConfig, build_app
        except ImportError as err:
            raise ValueError(f"{err.name} is not installed: pip install 'ernie-tiny[serve]'") from None
        from ernie_tiny.deploy.onnx_session import Device

        run_device = Device(backend_device(device, backend, precision, any_gpu=False))  # first: fail before loading
        if workers < 1:
            raise ValueError(f"--workers must be >= 1, got {workers}")
        if threads is None and workers > 1:
            threads = max(1, (os.cpu_count() or 1) // workers)  # N sessions on all cores would fight for them
        config = ServeConfig(model=str(model), max_batch=max_batch, max_wait_ms=max_wait_ms, max_texts=max_texts,
                             max_chars=max_chars, device=run_device, threads=threads,
                             long_texts=LongTexts.truncate if truncate_long_texts else LongTexts.reject,
                             backend=backend.value, precision=precision.value if precision else None,
                             cuda_graphs=cuda_graphs, max_batch_tokens=max_batch_tokens)
        app = build_app(config)  # loads the model: a bad folder fails here, in one line, before any worker starts
    console.print(f"serving {model} on http://{host}:{port} ({workers} worker{'s' if workers > 1 else ''}, "
                  f"max batch {max_batch}, max wait {max_wait_ms:g} ms, {backend.value})", markup=False)
    from ernie_tiny.deploy.uvicorn_server import DrainingH11Protocol  # SIGTERM answers every accepted connection

    settings = dict(host=host, port=port, log_level="info", access_log=False, timeout_graceful_shutdown=graceful_timeout,
                    http=DrainingH11Protocol)
    if workers == 1:
        uvicorn.run(app, **settings)
    else:  # each worker process builds its own app from the settings in its environment
        os.environ[CONFIG_ENVIRONMENT_VARIABLE] = config.to_json()
        uvicorn.run("ernie_tiny.deploy.serve:app_from_environment", factory=True, workers=workers, **settings)
