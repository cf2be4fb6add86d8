"""The server's bad-request table: encodings, surrogates, types, sizes, content types, methods, paths.

Each request goes to a real uvicorn process over one keep-alive connection (a raw socket, so that no
client reconnects behind our back); each must get a 4xx ``{"error": ...}`` answer, leave that
connection open (a good request follows on the same socket) and the server serving.
"""

from __future__ import annotations

import http.client
import json
import socket

import pytest

from ernie_tiny.tasks import Example
from ernie_tiny.deploy.export import ExportOptions, export_checkpoint
from test_export import REVIEWS, make_checkpoint
from test_serve import metric_samples, start_server, stop_server

MAX_TEXTS, MAX_CHARS = 8, 40
JSON = "application/json"
GOOD = json.dumps({"texts": ["房间很干净"]}).encode()
DEEP = 100_000  # brackets: deeper than Python's recursion limit


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("bad-requests")
    export = export_checkpoint(make_checkpoint(workspace / "ckpt"), workspace / "onnx",
                               ExportOptions(with_embeddings=True), [Example(t, None, 0) for _, t in REVIEWS]).directory
    process, url = start_server(export, "--max-texts", str(MAX_TEXTS), "--max-chars", str(MAX_CHARS))
    yield url, process
    stop_server(process)


class KeepAliveConnection:
    """HTTP/1.1 requests one after the other on one socket; raises when the server closed or reset it."""

    def __init__(self, url: str):
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)

    def request(self, method: str, path: str, body: bytes = b"", content_type: str | None = JSON
                ) -> tuple[int, dict[str, str], bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        if content_type is not None:
            head += f"Content-Type: {content_type}\r\n"
        self.sock.sendall(head.encode("latin-1") + b"\r\n" + body)
        response = http.client.HTTPResponse(self.sock, method=method)
        response.begin()
        payload = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, payload

    def close(self) -> None:
        self.sock.close()


def text_body(*texts: str, pairs: list[str] | None = None) -> bytes:
    body = {"texts": list(texts)} | ({} if pairs is None else {"text_pairs": pairs})
    return json.dumps(body).encode()  # ensure_ascii: a lone surrogate goes over the wire as "\ud800"


# (id, method, path, body, content type, status, what the error says)
BAD_REQUESTS = [
    # encodings
    ("gbk-body", "POST", "/v1/predict", '{"texts": ["酒店很好"]}'.encode("gbk"), JSON, 400, "could not be decoded"),
    ("latin1-byte", "POST", "/v1/predict", b'{"texts": ["caf\xe9"]}', JSON, 400, "could not be decoded"),
    ("truncated-utf8", "POST", "/v1/predict", b'{"texts": ["\xe5\xa5"]}', JSON, 400, "could not be decoded"),
    ("nul-bytes", "POST", "/v1/predict", b"\x00" * 16, JSON, 400, "malformed JSON"),
    # surrogates
    ("lone-high-surrogate", "POST", "/v1/predict", text_body("\ud800abc"), JSON, 422, "texts[0] holds a lone surrogate"),
    ("lone-low-surrogate", "POST", "/v1/predict", text_body("ok", "ab\udfff"), JSON, 422,
     "texts[1] holds a lone surrogate U+DFFF at character 2"),
    ("surrogate-in-pair", "POST", "/v1/predict", text_body("ok", pairs=["\udc00"]), JSON, 422, "text_pairs[0]"),
    ("surrogate-embed", "POST", "/v1/embed", text_body("\ud83d"), JSON, 422, "lone surrogate"),
    # JSON and types
    ("empty-body", "POST", "/v1/predict", b"", JSON, 422, "body: Field required"),
    ("malformed", "POST", "/v1/predict", b'{"texts": [', JSON, 400, "malformed JSON"),
    ("deep-nesting", "POST", "/v1/predict", b'{"texts": ' + b"[" * DEEP + b"]" * DEEP + b"}", JSON, 400, "nested less than"),
    ("nan", "POST", "/v1/predict", b'{"texts": [NaN]}', JSON, 422, "texts[0]: Input should be a valid string"),
    ("huge-number", "POST", "/v1/predict", b'{"texts": [1e999999]}', JSON, 422, "texts[0]"),
    ("null-texts", "POST", "/v1/predict", b'{"texts": null}', JSON, 422, "texts: Input should be a valid list"),
    ("object-texts", "POST", "/v1/predict", b'{"texts": {"a": 1}}', JSON, 422, "texts"),
    ("bool-text", "POST", "/v1/predict", b'{"texts": [true]}', JSON, 422, "texts[0]"),
    ("string-body", "POST", "/v1/predict", b'"just a string"', JSON, 422, "body"),
    ("unknown-field", "POST", "/v1/predict", b'{"texts": ["a"], "max_len": 3}', JSON, 422, "max_len"),
    ("bad-layer", "POST", "/v1/embed", b'{"texts": ["a"], "layer": "nope"}', JSON, 422, "layer"),
    # sizes
    ("too-many-texts", "POST", "/v1/predict", text_body(*["a"] * (MAX_TEXTS + 1)), JSON, 413, f"at most {MAX_TEXTS}"),
    ("too-long-text", "POST", "/v1/predict", text_body("长" * (MAX_CHARS + 1)), JSON, 413, "--truncate-long-texts"),
    ("megabyte-text", "POST", "/v1/embed", text_body("x" * 1_000_000), JSON, 413, "1000000 characters"),
    ("empty-texts", "POST", "/v1/predict", text_body(), JSON, 422, "texts is empty"),
    ("blank-text", "POST", "/v1/predict", text_body(" \u3000\n"), JSON, 422, "whitespace only"),
    # content types
    ("text-plain", "POST", "/v1/predict", GOOD, "text/plain", 415, "Content-Type 'text/plain'"),
    ("form", "POST", "/v1/predict", GOOD, "application/x-www-form-urlencoded", 415, "application/json"),
    ("no-content-type", "POST", "/v1/embed", GOOD, None, 415, "no Content-Type"),
    ("multipart", "POST", "/v1/predict", GOOD, "multipart/form-data; boundary=x", 415, "multipart/form-data"),
    # methods and paths
    ("get-predict", "GET", "/v1/predict", b"", None, 405, "GET /v1/predict: method not allowed (use POST)"),
    ("put-embed", "PUT", "/v1/embed", GOOD, JSON, 405, "method not allowed"),
    ("delete-health", "DELETE", "/healthz", b"", None, 405, "method not allowed (use GET)"),
    ("post-model", "POST", "/v1/model", GOOD, JSON, 405, "method not allowed"),
    ("unknown-path", "GET", "/v2/predict", b"", None, 404, "no endpoint /v2/predict"),
    ("unknown-post", "POST", "/predict", GOOD, JSON, 404, "the endpoints are"),
]


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[case[0] for case in BAD_REQUESTS])
def test_a_bad_request_gets_4xx_json_on_a_connection_that_stays_open(server, case):
    url, process = server
    _, method, path, body, content_type, status, message = case
    connection = KeepAliveConnection(url)
    try:
        got, headers, payload = connection.request(method, path, body, content_type)
        assert got == status, payload[:300]
        assert headers["content-type"].startswith("application/json"), headers
        error = json.loads(payload)
        assert set(error) == {"error"} and message in error["error"], error
        assert "\n" not in error["error"] and len(error["error"]) < 400  # one line, not a dump of the input
        assert headers.get("connection", "").lower() != "close", headers
        after, _, answer = connection.request("POST", "/v1/predict", GOOD)  # the same socket still works
        assert after == 200 and json.loads(answer)["predictions"][0]["label"] in ("negative", "positive")
    finally:
        connection.close()
    assert process.poll() is None


def test_the_metrics_count_every_refusal_by_code(server):
    url, _ = server
    before = metric_samples(url)
    connection = KeepAliveConnection(url)
    try:
        for _, method, path, body, content_type, _, _ in BAD_REQUESTS:
            connection.request(method, path, body, content_type)
    finally:
        connection.close()
    after = metric_samples(url)
    expected: dict[str, int] = {}
    for _, _, path, _, _, status, _ in BAD_REQUESTS:
        endpoint = path if path in ("/v1/predict", "/v1/embed", "/v1/model", "/healthz", "/metrics") else "other"
        key = f"ernie_tiny_errors_total{{code={status},endpoint={endpoint}}}"
        expected[key] = expected.get(key, 0) + 1
    for key, count in expected.items():
        assert after.get(key, 0) - before.get(key, 0) == count, key


def test_an_unexpected_error_is_a_json_500_and_the_connection_stays(tmp_path):
    """The last resort: what no handler expected still gets JSON, and a keep-alive client no reset."""
    from fastapi.testclient import TestClient

    from ernie_tiny.deploy.serve import ServeConfig, build_app
    from ernie_tiny.deploy.predict import Predictor

    export = export_checkpoint(make_checkpoint(tmp_path / "ckpt"), tmp_path / "onnx", ExportOptions(),
                               [Example(t, None, 0) for _, t in REVIEWS[:4]]).directory
    predictor = Predictor.load(export, threads=1)
    app = build_app(ServeConfig(model=str(export), call_cost_tokens=10.0), predictor=predictor)

    def broken_decode(*args, **kwargs):
        raise KeyError("a bug")

    predictor.decode = broken_decode
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/v1/predict", json={"texts": ["房间很干净"]})
        assert response.status_code == 500 and response.json() == {
            "error": "internal error (KeyError); the server log has the details"}
        assert client.get("/healthz").status_code == 200


def test_no_error_answer_leaks_fastapi_detail(server):
    url, _ = server
    connection = KeepAliveConnection(url)
    try:
        for _, method, path, body, content_type, _, _ in BAD_REQUESTS:
            _, _, payload = connection.request(method, path, body, content_type)
            assert b'"detail"' not in payload, (method, path, payload[:200])
    finally:
        connection.close()

