"""The HTTP server: a real uvicorn process on a free loopback port with a micro export.

Results match in-process inference, each request gets its own results in its order under
concurrency, bad requests get 4xx JSON and leave the server serving, /metrics is Prometheus
text, SIGTERM answers the request in flight, and no torch is imported on the way.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import typer
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from ernie_tiny.commands.serve import serve as serve_command
from ernie_tiny.tasks import Example
from ernie_tiny.deploy.batcher import BatchItem, DynamicBatcher, length_groups
from ernie_tiny.deploy.embed import EmbeddingLayer, embedding_of
from ernie_tiny.deploy.export import ExportOptions, export_checkpoint
from ernie_tiny.deploy.predict import Predictor
from ernie_tiny.deploy.serve import LongTexts, ServeConfig, build_app
from ernie_tiny.tokenization.encoding import Encoding, TokenSpan
from test_export import REVIEWS, make_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [text for _, text in REVIEWS]
MAX_TEXTS, MAX_CHARS = 16, 60  # the test server's limits


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(model: Path, *options: str) -> tuple[subprocess.Popen, str]:
    """``python -m ernie_tiny serve`` on a free port; returns once /healthz answers."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "ernie_tiny", "serve", "--model", str(model), "--port", str(port),
                                "--threads", "1", *options], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited {process.returncode}: {process.stdout.read()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("server did not answer /healthz within 90 s")


def stop_server(process: subprocess.Popen) -> tuple[int, str]:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return process.returncode, output


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    """A micro sentiment classifier exported with its pooled and top-layer outputs."""
    workspace = tmp_path_factory.mktemp("serve")
    checkpoint = make_checkpoint(workspace / "ckpt")
    return export_checkpoint(checkpoint, workspace / "onnx", ExportOptions(with_embeddings=True),
                             [Example(text, None, 0) for text in TEXTS]).directory


@pytest.fixture(scope="module")
def predictor(export_dir) -> Predictor:
    return Predictor.load(export_dir, threads=1)


@pytest.fixture(scope="module")
def server(export_dir):
    process, url = start_server(export_dir, "--max-batch", "8", "--max-wait-ms", "20", "--max-texts", str(MAX_TEXTS),
                                "--max-chars", str(MAX_CHARS))
    yield url, process
    stop_server(process)


def expected_embedding(predictor: Predictor, text: str, layer: EmbeddingLayer, text_b: str | None = None) -> np.ndarray:
    """The text's embedding from a batch of one, in process."""
    encoding = predictor.tokenizer.encode(text, text_b, max_len=predictor.config.max_len)
    return embedding_of(predictor.run([encoding]), 0, len(encoding), layer)


def metric_samples(url: str) -> dict[str, float]:
    """``{sample name{labels}: value}`` of /metrics, parsed by prometheus_client's own parser."""
    response = httpx.get(f"{url}/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def test_predict_and_embed_match_in_process_inference(server, predictor):
    url, _ = server
    texts, pairs = TEXTS[:3], ["问题一", "另一个问题", "第三"]
    response = httpx.post(f"{url}/v1/predict", json={"texts": texts})
    assert response.status_code == 200
    assert response.json()["predictions"] == [p.to_dict() for p in predictor.predict(texts)]
    response = httpx.post(f"{url}/v1/predict", json={"texts": texts, "text_pairs": pairs})
    assert response.json()["predictions"] == [p.to_dict() for p in predictor.predict(list(zip(texts, pairs)))]
    for layer in ("pooler", "cls", "mean"):
        body = httpx.post(f"{url}/v1/embed", json={"texts": texts, "layer": layer}).json()
        assert body["layer"] == layer and body["dim"] == predictor.config.model_config["hidden_size"]
        expected = [expected_embedding(predictor, text, EmbeddingLayer(layer)) for text in texts]
        np.testing.assert_allclose(np.array(body["embeddings"]), np.array(expected), atol=1e-5)


def test_token_layer_gives_a_vector_per_token_consistent_with_cls_and_mean(server):
    url, _ = server
    texts = ["房间很干净", "太吵了，晚上根本睡不着"]
    tokens = httpx.post(f"{url}/v1/embed", json={"texts": texts, "layer": "tokens"}).json()
    assert tokens["truncated"] == [False, False]
    cls = httpx.post(f"{url}/v1/embed", json={"texts": texts, "layer": "cls"}).json()["embeddings"]
    mean = httpx.post(f"{url}/v1/embed", json={"texts": texts, "layer": "mean"}).json()["embeddings"]
    for row, text in enumerate(texts):
        vectors = np.array(tokens["embeddings"][row])
        assert tokens["tokens"][row][0] == "[CLS]" and len(tokens["tokens"][row]) == len(text) + 2 == len(vectors)
        np.testing.assert_allclose(vectors[0], cls[row], atol=1e-5)
        np.testing.assert_allclose(vectors.mean(axis=0), mean[row], atol=1e-5)


def test_concurrent_requests_of_mixed_lengths_get_their_own_results_in_order(server, predictor):
    url, _ = server
    before = metric_samples(url)
    rng = np.random.default_rng(0)
    requests = []
    for index in range(24):
        count = int(rng.integers(1, 6))
        # mixed lengths: whole reviews, prefixes of a few characters, and two reviews joined
        texts = [(TEXTS[int(rng.integers(len(TEXTS)))] * int(rng.integers(1, 3)))[:int(rng.integers(2, MAX_CHARS))]
                 for _ in range(count)]
        requests.append(("cls" if index % 2 else "predict", texts))

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            return await asyncio.gather(*(
                client.post("/v1/predict", json={"texts": texts}) if kind == "predict"
                else client.post("/v1/embed", json={"texts": texts, "layer": "cls"}) for kind, texts in requests))

    responses = asyncio.run(send_all())
    for (kind, texts), response in zip(requests, responses):
        assert response.status_code == 200, response.text
        if kind == "predict":
            assert [p["text_a"] for p in response.json()["predictions"]] == texts
            got = np.array([p["embedding"] for p in response.json()["predictions"]])
            expected = [expected_embedding(predictor, text, EmbeddingLayer.pooler) for text in texts]
        else:
            got = np.array(response.json()["embeddings"])
            expected = [expected_embedding(predictor, text, EmbeddingLayer.cls) for text in texts]
        np.testing.assert_allclose(got, np.array(expected), atol=1e-5)
    after = metric_samples(url)
    batches = after["ernie_tiny_batch_size_count{}"] - before["ernie_tiny_batch_size_count{}"]
    texts_run = after["ernie_tiny_batch_size_sum{}"] - before["ernie_tiny_batch_size_sum{}"]
    assert texts_run == sum(len(texts) for _, texts in requests)
    assert texts_run / batches > 1.5, "concurrent requests should have shared onnxruntime calls"
    assert after["ernie_tiny_batch_size_bucket{le=8.0}"] == after["ernie_tiny_batch_size_count{}"]  # --max-batch 8


BAD_REQUESTS = [  # (endpoint, raw body, status, what the error must say)
    ("/v1/predict", b'{"texts": ["a",', 400, "malformed JSON"),
    ("/v1/predict", b'["a", "b"]', 422, "body: Input should be a valid dictionary"),
    ("/v1/predict", b'{"texts": "a single string"}', 422, "texts: Input should be a valid list"),
    ("/v1/predict", b'{"texts": ["ok", 7]}', 422, "texts[1]: Input should be a valid string"),
    ("/v1/predict", b'{"text": ["misspelt field"]}', 422, "texts: Field required"),
    ("/v1/predict", b'{"texts": []}', 422, "texts is empty"),
    ("/v1/predict", json.dumps({"texts": ["ok", "  "]}).encode(), 422, "texts[1] is empty or whitespace only"),
    ("/v1/predict", json.dumps({"texts": ["a"] * (MAX_TEXTS + 1)}).encode(), 413, f"at most {MAX_TEXTS}"),
    ("/v1/predict", json.dumps({"texts": ["a", "长" * (MAX_CHARS + 1)]}).encode(), 413,
     f"texts[1] has {MAX_CHARS + 1} characters"),
    ("/v1/predict", json.dumps({"texts": ["a"], "text_pairs": ["b" * (MAX_CHARS + 1)]}).encode(), 413,
     "text_pairs[0]"),
    ("/v1/predict", json.dumps({"texts": ["a", "b"], "text_pairs": ["c"]}).encode(), 422,
     "texts has 2 items but text_pairs has 1"),
    ("/v1/embed", json.dumps({"texts": ["a"], "layer": "pooled"}).encode(), 422, "layer: Input should be"),
    ("/v1/embed", json.dumps({"texts": ["a"], "text_pairs": None, "layer": 3}).encode(), 422, "layer"),
]


def test_bad_requests_get_4xx_json_errors_and_the_server_keeps_serving(server):
    url, process = server
    for endpoint, body, status, message in BAD_REQUESTS:
        response = httpx.post(f"{url}{endpoint}", content=body, headers={"content-type": "application/json"})
        assert response.status_code == status, (body, response.text)
        assert message in response.json()["error"], (body, response.json())
    assert httpx.post(f"{url}/v1/predict", content=b'{"texts": ["ok"]}').status_code == 415  # no JSON content type
    good = httpx.post(f"{url}/v1/predict", json={"texts": ["房间很干净"]})
    assert good.status_code == 200 and good.json()["predictions"][0]["label"] in ("negative", "positive")
    assert process.poll() is None
    samples = metric_samples(url)
    assert samples["ernie_tiny_errors_total{code=413,endpoint=/v1/predict}"] >= 3
    assert samples["ernie_tiny_errors_total{code=400,endpoint=/v1/predict}"] >= 1


def test_model_health_and_metrics_endpoints(server, export_dir):
    url, _ = server
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    model = httpx.get(f"{url}/v1/model").json()
    assert model["model"] == str(export_dir.resolve()) and model["task"] == "chnsenticorp"
    assert model["labels"] == ["negative", "positive"] and model["tokenizer"] == "char"
    assert model["precision"] == "fp32" and model["max_len"] == 128 and model["max_batch"] == 8
    assert model["embedding_layers"] == ["pooler", "cls", "mean", "tokens"]
    httpx.post(f"{url}/v1/predict", json={"texts": ["房间很干净", "太吵了"]})
    samples = metric_samples(url)
    assert samples["ernie_tiny_requests_total{code=200,endpoint=/v1/predict}"] >= 1
    for family in ("ernie_tiny_queue_wait_seconds", "ernie_tiny_model_seconds", "ernie_tiny_batch_size"):
        assert samples[f"{family}_count{{}}"] >= 1
    assert samples["ernie_tiny_batch_tokens_total{kind=padded}"] >= samples["ernie_tiny_batch_tokens_total{kind=real}"]
    assert samples["ernie_tiny_model_calls_total{}"] >= samples["ernie_tiny_batch_size_count{}"]


def test_the_server_process_maps_no_torch_library(server):
    maps = Path(f"/proc/{server[1].pid}/maps")
    if not maps.exists():
        pytest.skip("no /proc on this system")
    libraries = maps.read_text()
    assert "onnxruntime" in libraries  # the check reads the right process
    assert "libtorch" not in libraries


def test_serve_and_app_import_no_torch(export_dir):
    script = textwrap.dedent(f"""
        import sys
        from fastapi.testclient import TestClient
        from ernie_tiny.commands.serve import serve
        from ernie_tiny.deploy.serve import ServeConfig, build_app
        with TestClient(build_app(ServeConfig(model={str(export_dir)!r}))) as client:
            assert client.post("/v1/embed", json={{"texts": ["房间很干净"]}}).status_code == 200
        print("torch imported:", "torch" in sys.modules)
    """)
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines()[-1] == "torch imported: False"


def test_sigterm_answers_the_request_in_flight_then_exits(export_dir):
    process, url = start_server(export_dir)
    port = int(url.rsplit(":", 1)[1])
    body = json.dumps({"texts": ["房间很干净", "太吵了"]}).encode()
    head = (f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(head + body[:10])  # the request is in flight: the server waits for the rest of its body
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(OSError):  # no new connections once shutdown began
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        assert process.poll() is None, "the server must wait for the request in flight"
        connection.sendall(body[10:])
        response = b""
        while chunk := connection.recv(65536):
            response += chunk
    status_line, _, payload = response.partition(b"\r\n\r\n")
    assert status_line.startswith(b"HTTP/1.1 200"), response
    assert [p["text_a"] for p in json.loads(payload)["predictions"]] == ["房间很干净", "太吵了"]
    returncode, output = stop_server(process)
    # uvicorn re-raises the SIGTERM it caught once shutdown is complete, so the exit status says "terminated"
    assert returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output and "Finished server process" in output


@pytest.mark.slow  # three processes load the model: about 10 s on a busy 2-core machine
def test_several_workers_serve_and_stop_on_sigterm(export_dir):
    process, url = start_server(export_dir, "--workers", "2")
    try:
        answers = [httpx.post(f"{url}/v1/predict", json={"texts": ["房间很干净"]}) for _ in range(4)]
        assert all(a.status_code == 200 for a in answers)
    finally:
        returncode, output = stop_server(process)
    assert returncode in (0, -signal.SIGTERM), output
    assert output.count("Started server process") == 2 and output.count("Finished server process") == 2


def test_healthz_answers_while_a_batch_runs(export_dir):
    predictor = Predictor.load(export_dir, threads=1)
    real_run = predictor.run

    def slow_run(encodings: list[Encoding]) -> dict[str, np.ndarray]:
        time.sleep(1.0)
        return real_run(encodings)

    predictor.run = slow_run  # build_app hands predictor.run to the batcher
    app = build_app(ServeConfig(model=str(export_dir)), predictor=predictor)

    async def race() -> tuple[float, float]:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://server") as client:
                started = time.perf_counter()
                predict = asyncio.create_task(client.post("/v1/predict", json={"texts": ["房间很干净"]}))
                await asyncio.sleep(0.2)
                assert (await client.get("/healthz")).status_code == 200
                health_done = time.perf_counter() - started
                assert (await predict).status_code == 200
                return health_done, time.perf_counter() - started

    health_done, predict_done = asyncio.run(race())
    assert health_done < 0.8 < predict_done


def test_long_texts_can_be_truncated_instead_of_refused(export_dir, predictor):
    config = ServeConfig(model=str(export_dir), max_chars=5, long_texts=LongTexts.truncate)
    with TestClient(build_app(config, predictor=predictor)) as client:
        response = client.post("/v1/embed", json={"texts": ["房间很干净，服务也很周到"], "layer": "cls"})
    assert response.status_code == 200
    np.testing.assert_allclose(response.json()["embeddings"][0],
                               expected_embedding(predictor, "房间很干净", EmbeddingLayer.cls), atol=1e-5)


def test_embed_on_an_export_without_embedding_outputs_is_a_400(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "ckpt")
    plain = export_checkpoint(checkpoint, tmp_path / "onnx", ExportOptions(optimize=False),
                              [Example(text, None, 0) for text in TEXTS[:2]]).directory
    with TestClient(build_app(ServeConfig(model=str(plain)))) as client:
        response = client.post("/v1/embed", json={"texts": ["房间"]})
        assert response.status_code == 400 and "--with-embeddings" in response.json()["error"]
        assert client.get("/v1/model").json()["embedding_layers"] == []
        assert client.post("/v1/predict", json={"texts": ["房间"]}).status_code == 200


def fake_encoding(length: int) -> Encoding:
    return Encoding(tokens=["x"] * length, input_ids=[1] * length, token_type_ids=[0] * length,
                    spans=[TokenSpan(0, i, i + 1) for i in range(length)])


def test_batcher_keeps_order_respects_max_batch_and_fails_only_the_broken_batch():
    sizes: list[int] = []

    def run(encodings: list[Encoding]) -> dict[str, np.ndarray]:
        if any(len(e) == 99 for e in encodings):
            raise RuntimeError("onnxruntime failed")
        sizes.append(len(encodings))
        time.sleep(0.01)
        return {"length": np.array([len(e) for e in encodings])}

    def request(lengths: list[int]):
        return lambda: [BatchItem(fake_encoding(n), lambda outputs, row: int(outputs["length"][row])) for n in lengths]

    async def scenario():
        batcher = DynamicBatcher(run, max_batch=4, max_wait_s=0.5, call_cost_tokens=1e9)  # one call per batch
        batcher.start()
        lone_started = time.perf_counter()
        assert await batcher.submit(request([3])) == [3]
        lone_seconds = time.perf_counter() - lone_started
        requests = [[1 + (i * 7 + j) % 13 for j in range(1 + i % 5)] for i in range(12)]
        answers = await asyncio.gather(*(batcher.submit(request(lengths)) for lengths in requests))
        broken = await asyncio.gather(batcher.submit(request([99])), return_exceptions=True)
        after = await batcher.submit(request([2, 5]))
        await batcher.close()
        return lone_seconds, requests, answers, broken, after

    lone_seconds, requests, answers, broken, after = asyncio.run(scenario())
    assert lone_seconds < 0.25, "a lone request must not wait max_wait_s for others"
    assert answers == requests
    assert isinstance(broken[0], RuntimeError) and after == [2, 5]
    assert max(sizes) == 4 and sum(sizes) == 1 + sum(map(len, requests)) + 2


def test_length_groups_cut_a_batch_where_padding_costs_more_than_a_call():
    lengths = [100, 3, 98, 4, 3, 60]
    groups = length_groups(lengths, call_cost_tokens=10)
    assert groups == [[1, 4, 3], [5], [2, 0]]  # 3, 3, 4 | 60 | 98, 100: sorted, each index once
    assert length_groups(lengths, call_cost_tokens=1e6) == [[1, 4, 3, 5, 2, 0]]  # calls dear: one call
    assert length_groups(lengths, call_cost_tokens=0) == [[1, 4], [3], [5], [2], [0]]  # calls free: no padding
    assert length_groups([7] * 5, call_cost_tokens=0) == [[0, 1, 2, 3, 4]]


def test_the_batcher_runs_one_call_per_length_group_and_answers_in_order():
    calls: list[list[int]] = []

    def run(encodings: list[Encoding]) -> dict[str, np.ndarray]:
        calls.append([len(e) for e in encodings])
        return {"length": np.array([len(e) for e in encodings])}

    async def scenario() -> list[int]:
        batcher = DynamicBatcher(run, max_batch=8, max_wait_s=0.5, call_cost_tokens=10)
        batcher.start()
        answer = await batcher.submit(lambda: [BatchItem(fake_encoding(n), lambda out, row: int(out["length"][row]))
                                               for n in (100, 3, 98, 4, 3, 60)])
        await batcher.close()
        return answer

    assert asyncio.run(scenario()) == [100, 3, 98, 4, 3, 60]
    assert calls == [[3, 3, 4], [60], [98, 100]]


def test_the_call_cost_is_measured_unless_given(export_dir, predictor):
    with TestClient(build_app(ServeConfig(model=str(export_dir)), predictor=predictor)) as client:
        measured = client.get("/v1/model").json()["call_cost_tokens"]
    assert 0 <= measured <= 4096
    with TestClient(build_app(ServeConfig(model=str(export_dir), call_cost_tokens=12.5), predictor=predictor)) as client:
        assert client.get("/v1/model").json()["call_cost_tokens"] == 12.5


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(serve_command)
    app.command("noop")(lambda: None)
    return app


def test_cli_errors_are_one_line(tmp_path, export_dir):
    result = CliRunner().invoke(cli(), ["serve", "--model", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "error:" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(cli(), ["serve", "--model", str(export_dir), "--max-batch", "0"])
    assert result.exit_code == 2 and "'--max-batch'" in result.output and "Traceback" not in result.output
    for port in ("-1", "0", "70000"):  # refused while the options are parsed, before the model loads
        result = CliRunner().invoke(cli(), ["serve", "--model", str(export_dir), "--port", port])
        assert result.exit_code == 2 and "'--port'" in result.output and "Traceback" not in result.output


def test_serve_is_a_command_of_the_console_script():
    completed = subprocess.run([sys.executable, "-m", "ernie_tiny", "serve", "--help"], capture_output=True, text=True,
                               timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert completed.returncode == 0 and "--max-wait-ms" in completed.stdout


def load_benchmark():
    spec = importlib.util.spec_from_file_location("serve_load", ROOT / "benchmarks" / "serve_load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_load_benchmark_measures_a_running_server(server):
    url, process = server
    row = load_benchmark().measure(int(url.rsplit(":", 1)[1]), TEXTS, requests=40, concurrency=4, start=0,
                                   pid=process.pid)
    assert row["requests"] == 40 and row["failures"] == 0 and row["requests_per_s"] > 0
    assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
    assert 1 <= row["mean_batch"] <= 4  # 4 clients with one text each never fill more than 4 rows
    assert 1 <= row["calls_per_batch"] <= row["mean_batch"]
    if Path("/proc").exists():
        assert row["server_cpu_ms_per_request"] > 0


@pytest.mark.slow  # two servers and 2 x 2 x 30 requests: about 15 s
def test_load_benchmark_writes_its_table_for_batching_on_and_off(export_dir, tmp_path):
    completed = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "serve_load.py"), "--model", str(export_dir),
                                "--requests", "30", "--concurrency", "1,4", "--out", str(tmp_path)],
                               capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert completed.returncode == 0, completed.stderr
    result = json.loads((tmp_path / "serve_load.json").read_text(encoding="utf-8"))
    assert [(r["concurrency"], r["mode"]) for r in result["rows"]] == [
        (1, "batching"), (1, "no batching"), (4, "batching"), (4, "no batching")]
    assert all(r["failures"] == 0 for r in result["rows"])
    assert all(r["mean_batch"] == 1.0 for r in result["rows"] if r["mode"] == "no batching")
    assert "| 4 | batching |" in (tmp_path / "serve_load.md").read_text(encoding="utf-8")
    assert (tmp_path / "serve_load.png").stat().st_size > 0
