"""The HTTP JSON server over an export folder (onnxruntime, no torch import) or a checkpoint (``backend="torch"``).

    POST /v1/predict   {"texts": [...], "text_pairs": [...]?}                -> {"predictions": [...]}
    POST /v1/embed     {"texts": [...], "text_pairs": [...]?, "layer": ...}  -> {"layer", "dim", "embeddings",
                                                                              "truncated", "tokens" (layer tokens)}
    GET  /v1/model     head, task, labels, tokenizer, max_len, precision, limits
    GET  /healthz      {"status": "ok"}
    GET  /metrics      Prometheus text: requests, errors, batch sizes, queue wait and model time

Every text of every request goes through one :class:`~ernie_tiny.deploy.batcher.DynamicBatcher`,
so concurrent requests share onnxruntime calls. A bad request gets ``{"error": "..."}``
with a 4xx code and never reaches the model. ``build_app(ServeConfig(model=...))`` gives the
ASGI app; ``ernie-tiny serve`` runs it under uvicorn, which on SIGTERM stops accepting,
answers the requests in flight, then closes the batcher.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from enum import Enum
from functools import partial
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict

from ernie_tiny.deploy.batcher import BatchItem, BatchStats, DynamicBatcher, Outputs, ServerShuttingDown
from ernie_tiny.deploy.embed import (EmbeddingLayer, EmbeddingsUnavailableError, check_embedding_outputs,
                                     embedding_of, encode_texts)
from ernie_tiny.deploy.http_errors import install_error_answers, lone_surrogate_error
from ernie_tiny.deploy.onnx_session import Device
from ernie_tiny.deploy.uvicorn_server import answered_summary
from ernie_tiny.deploy.predict import Predictor
from ernie_tiny.tokenization.encoding import Encoding, TokenSpan

CONFIG_ENVIRONMENT_VARIABLE = "ERNIE_TINY_SERVE_CONFIG"  # how `serve --workers N` hands its settings to each worker
ENDPOINTS = ("/v1/predict", "/v1/embed", "/v1/model", "/healthz", "/metrics")


class LongTexts(str, Enum):
    reject = "reject"  # a text past --max-chars is a 413 error
    truncate = "truncate"  # a text past --max-chars is cut to its first max_chars characters


@dataclass(frozen=True)
class ServeConfig:
    model: str  # export folder, or a .onnx file inside one
    max_batch: int = 32  # texts per batch (one onnxruntime call per length group in it); 1 turns batching off
    max_wait_ms: float = 5.0  # how long a batch's first text may wait for others to arrive
    max_texts: int = 64  # texts per request
    max_chars: int = 2000  # characters per text (text_a and text_b each), checked before tokenizing
    long_texts: LongTexts = LongTexts.reject
    device: Device = Device.cpu
    threads: int | None = None  # onnxruntime intra-op threads (default: all cores)
    call_cost_tokens: float | None = None  # a call's fixed cost in tokens (None: measured when the app is built)
    backend: str = "onnxruntime"  # or "torch": model is a checkpoint folder, run by deploy.torch_runner
    precision: str | None = None  # torch: fp32, fp16 or bf16 (None: fp16 on CUDA, fp32 on the CPU)
    cuda_graphs: bool = True  # torch on CUDA: one CUDA graph per (batch, length) bucket
    max_batch_tokens: int | None = None  # a batch's rows x longest row at most (None: max_batch alone)

    def __post_init__(self) -> None:
        if self.backend not in ("onnxruntime", "torch"):
            raise ValueError(f"backend must be onnxruntime or torch, got {self.backend!r}")
        if self.max_batch_tokens is not None and self.max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be >= 1, got {self.max_batch_tokens}")
        object.__setattr__(self, "long_texts", LongTexts(self.long_texts))
        object.__setattr__(self, "device", Device(self.device))
        for name in ("max_batch", "max_texts", "max_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.call_cost_tokens is not None and self.call_cost_tokens < 0:
            raise ValueError(f"call_cost_tokens must be >= 0, got {self.call_cost_tokens}")

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "long_texts": self.long_texts.value, "device": self.device.value})


class TextsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently ignored

    texts: list[str]
    text_pairs: list[str] | None = None  # text_b of each text, for pair tasks


class EmbedRequest(TextsRequest):
    layer: EmbeddingLayer = EmbeddingLayer.pooler


class RequestError(Exception):
    """A request the server understood but will not run: answered with ``status`` and ``message``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def request_pairs(request: TextsRequest, config: ServeConfig) -> list[tuple[str, str | None]]:
    """``(text_a, text_b)`` per text after the request limits; raises :class:`RequestError`."""
    texts, text_pairs = request.texts, request.text_pairs
    if not texts:
        raise RequestError(422, "texts is empty: send at least one text")
    if len(texts) > config.max_texts:
        raise RequestError(413, f"{len(texts)} texts in one request; at most {config.max_texts} (--max-texts)")
    if text_pairs is not None and len(text_pairs) != len(texts):
        raise RequestError(422, f"texts has {len(texts)} items but text_pairs has {len(text_pairs)}: "
                                "they pair up one to one")
    pairs = []
    for index, text_a in enumerate(texts):
        text_b = None if text_pairs is None else text_pairs[index]
        for field, text in (("texts", text_a), ("text_pairs", text_b)):
            if text is not None and not text.strip():
                raise RequestError(422, f"{field}[{index}] is empty or whitespace only: nothing to run")
            surrogate = None if text is None else lone_surrogate_error(f"{field}[{index}]", text)
            if surrogate is not None:
                raise RequestError(422, surrogate)
            if text is not None and len(text) > config.max_chars and config.long_texts is LongTexts.reject:
                raise RequestError(413, f"{field}[{index}] has {len(text)} characters; at most {config.max_chars} "
                                        "(--max-chars; serve --truncate-long-texts cuts instead)")
        if config.long_texts is LongTexts.truncate:
            text_a, text_b = text_a[:config.max_chars], None if text_b is None else text_b[:config.max_chars]
        pairs.append((text_a, text_b))
    return pairs


def validation_message(error: RequestValidationError) -> tuple[int, str]:
    """(status, one line) for pydantic's errors: 400 for unparsable JSON, 422 for wrong fields or types."""
    messages, malformed = [], False
    for detail in error.errors():
        location = [str(part) for part in detail.get("loc", ()) if part != "body"]
        if detail.get("type") == "json_invalid":
            malformed = True
            reason = detail.get("ctx", {}).get("error", detail.get("msg", ""))
            messages.append(f"malformed JSON at character {location[0] if location else '?'}: {reason}")
            continue
        path = "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in location).lstrip(".")
        messages.append(f"{path or 'body'}: {detail.get('msg', 'invalid')}")
    return (400 if malformed else 422), "; ".join(messages)


class ServerMetrics:
    """The Prometheus series, in a registry of their own (several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("ernie_tiny_requests", "HTTP requests by endpoint and status code",
                                ["endpoint", "code"], registry=self.registry)
        self.errors = Counter("ernie_tiny_errors", "HTTP requests answered with a 4xx or 5xx code",
                              ["endpoint", "code"], registry=self.registry)
        self.request_seconds = Histogram("ernie_tiny_request_seconds", "Time from request to response",
                                         ["endpoint"], registry=self.registry,
                                         buckets=(.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5))
        self.batch_size = Histogram("ernie_tiny_batch_size", "Texts per onnxruntime call", registry=self.registry,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.queue_wait_seconds = Histogram("ernie_tiny_queue_wait_seconds", "Per text: queued -> its batch starts",
                                            registry=self.registry,
                                            buckets=(.0001, .0005, .001, .002, .005, .01, .02, .05, .1, .5, 1))
        self.model_seconds = Histogram("ernie_tiny_model_seconds", "Per batch: pad, onnxruntime run, decode",
                                       registry=self.registry,
                                       buckets=(.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2))
        self.model_calls = Counter("ernie_tiny_model_calls", "onnxruntime calls (a batch makes one per length group)",
                                   registry=self.registry)
        self.batch_tokens = Counter("ernie_tiny_batch_tokens", "Tokens sent to the graph: real, or with padding",
                                    ["kind"], registry=self.registry)

    def observe_batch(self, stats: BatchStats) -> None:
        self.batch_size.observe(stats.size)
        for wait in stats.queue_wait_s:
            self.queue_wait_seconds.observe(wait)
        self.model_seconds.observe(stats.model_s)
        self.model_calls.inc(stats.calls)
        self.batch_tokens.labels("real").inc(stats.real_tokens)
        self.batch_tokens.labels("padded").inc(stats.padded_tokens)

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        if status >= 400:
            self.errors.labels(endpoint, str(status)).inc()
        self.request_seconds.labels(endpoint).observe(seconds)


class MetricsMiddleware:
    """Counts every HTTP response by endpoint and status (plain ASGI: no per-request task or body copy)."""

    def __init__(self, app: Callable, metrics: ServerMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        endpoint = scope["path"] if scope["path"] in ENDPOINTS else "other"  # unknown paths: one series
        started, status = time.perf_counter(), 500

        async def send_and_record_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            self.metrics.observe_request(endpoint, status, time.perf_counter() - started)


def measure_call_cost_tokens(predictor: Predictor, device: Device, repeats: int = 3) -> float:
    """What one model call costs besides its tokens, in tokens: from a 1 x 8 and an 8 x 64 batch.

    Times ``predictor.run`` (padding, onnxruntime, outputs to numpy) and fits
    ``time = per_call + tokens x per_token`` to the best of ``repeats`` runs of each: CPU time
    on the CPU, where other processes' load would blur wall time; wall time on CUDA, whose
    work the CPU clock misses. Returns per_call / per_token, between 0 and 4096. The runs
    also warm the session up.
    """
    clock = time.process_time if device is Device.cpu else time.perf_counter
    token_id = predictor.tokenizer.pad_id + 1

    def best_time(rows: int, length: int) -> float:
        encoding = Encoding(tokens=["x"] * length, input_ids=[token_id] * length, token_type_ids=[0] * length,
                            spans=[TokenSpan(0, i, i + 1) for i in range(length)])
        predictor.run([encoding] * rows)  # warm-up
        times = []
        for _ in range(repeats):
            started = clock()
            predictor.run([encoding] * rows)
            times.append(clock() - started)
        return min(times)

    small, large = best_time(1, 8), best_time(8, 64)
    per_token = (large - small) / (8 * 64 - 8)
    if per_token <= 0:  # the clock could not tell them apart: tokens look free, so never split a batch
        return 4096.0
    return float(min(4096.0, max(0.0, (small - 8 * per_token) / per_token)))


def model_description(predictor: Predictor, config: ServeConfig, call_cost_tokens: float) -> dict:
    model = predictor.config
    return {"model": str(predictor.directory.resolve()), "head": model.head, "task": model.task,
            "labels": list(model.labels), "tokenizer": model.tokenizer_kind, "max_len": model.max_len,
            "precision": model.precision.value, "outputs": list(model.outputs),
            "embedding_layers": [layer.value for layer in EmbeddingLayer if layer.graph_output in model.outputs],
            "max_batch": config.max_batch, "max_wait_ms": config.max_wait_ms, "max_texts": config.max_texts,
            "max_chars": config.max_chars, "long_texts": config.long_texts.value,
            "call_cost_tokens": round(call_cost_tokens, 1), "backend": predictor.backend,
            "max_batch_tokens": config.max_batch_tokens}


def load_predictor(config: ServeConfig) -> Predictor:
    """onnxruntime on an export folder, or torch on a checkpoint folder (``backend="torch"``, torch imported here)."""
    if config.backend == "onnxruntime":
        return Predictor.load(config.model, device=config.device, threads=config.threads)
    if config.threads is not None:
        import torch

        torch.set_num_threads(config.threads)
    precision = config.precision or ("fp16" if config.device is Device.cuda else "fp32")
    predictor = Predictor.load_torch(config.model, device=config.device.value, precision=precision,
                                     cuda_graphs=config.cuda_graphs)
    if config.device is Device.cuda:  # every bucket a batch can reach, captured before the first request
        predictor.session.warm_up_buckets(config.max_batch, predictor.config.max_len)
    return predictor


def build_app(config: ServeConfig, predictor: Predictor | None = None) -> FastAPI:
    """The ASGI app for ``config.model`` (loaded here, so a bad folder fails before the server starts)."""
    predictor = predictor or load_predictor(config)
    metrics = ServerMetrics()
    call_cost_tokens = config.call_cost_tokens
    if call_cost_tokens is None:
        call_cost_tokens = measure_call_cost_tokens(predictor, config.device)
    batcher = DynamicBatcher(predictor.run, max_batch=config.max_batch, max_wait_s=config.max_wait_ms / 1000,
                             call_cost_tokens=call_cost_tokens, on_batch=metrics.observe_batch,
                             max_batch_tokens=config.max_batch_tokens)
    description = model_description(predictor, config, call_cost_tokens)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.close()  # uvicorn gets here after answering the requests in flight
        logging.getLogger("uvicorn.error").info(answered_summary(metrics.registry))

    app = FastAPI(title="ernie-tiny", version="1", lifespan=lifespan, docs_url=None, redoc_url=None)
    install_error_answers(app)  # inside the metrics middleware: its 415s and 500s are counted
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        status, message = validation_message(error)
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(RequestError)
    async def refused_request(request: Request, error: RequestError) -> JSONResponse:
        return JSONResponse({"error": error.message}, status_code=error.status)

    @app.exception_handler(ServerShuttingDown)
    async def shutting_down(request: Request, error: ServerShuttingDown) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=503)

    def batch_items(request: TextsRequest, decode: Callable[..., Any]) -> Callable[[], list[BatchItem]]:
        """Checks the request's limits now (an oversized request is never tokenized); the function it returns
        tokenizes, in the batcher's thread, into items whose result is ``decode(pair, encoding, outputs, row)``."""
        pairs = request_pairs(request, config)

        def prepare() -> list[BatchItem]:
            encodings = encode_texts(predictor.tokenizer, predictor.config, pairs)
            return [BatchItem(encoding, partial(decode, pair, encoding)) for pair, encoding in zip(pairs, encodings)]

        return prepare

    @app.post("/v1/predict")
    async def predict(request: TextsRequest) -> JSONResponse:
        def prediction(pair: tuple[str, str | None], encoding: Encoding, outputs: Outputs, row: int) -> dict:
            return predictor.decode(pair, encoding, outputs, row).to_dict()

        return JSONResponse({"predictions": await batcher.submit(batch_items(request, prediction))})

    @app.post("/v1/embed")
    async def embed(request: EmbedRequest) -> JSONResponse:
        layer = request.layer
        try:
            check_embedding_outputs(predictor.config, layer)
        except EmbeddingsUnavailableError as err:
            raise RequestError(400, str(err)) from None

        def embedding(pair: tuple[str, str | None], encoding: Encoding, outputs: Outputs, row: int) -> tuple:
            return embedding_of(outputs, row, len(encoding), layer).tolist(), encoding.truncated, encoding.tokens

        vectors, truncated, tokens = zip(*await batcher.submit(batch_items(request, embedding)))
        per_token = layer is EmbeddingLayer.tokens
        body = {"layer": layer.value, "dim": len(vectors[0][0] if per_token else vectors[0]),
                "embeddings": list(vectors), "truncated": list(truncated)}
        if per_token:
            body["tokens"] = list(tokens)  # one token string per vector
        return JSONResponse(body)

    @app.get("/v1/model")
    async def model() -> JSONResponse:
        return JSONResponse(description)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def app_from_environment() -> FastAPI:
    """The app of each ``serve --workers N`` worker process, from the settings its parent put in the environment."""
    return build_app(ServeConfig(**json.loads(os.environ[CONFIG_ENVIRONMENT_VARIABLE])))
