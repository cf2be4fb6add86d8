"""Load and fault: SIGTERM in the middle of a burst of requests on loopback.

Every request must end one of two ways: answered 200, or never accepted by the server (the connect
refused once the listening socket closed, or reset by the kernel while it waited in the listen
backlog). None may be dropped after the server accepted it: the server's own count of 200s (its
/metrics counter, logged at exit) equals the client's, and it closed no accepted connection without
reading its request.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import threading
import time

import pytest

from ernie_tiny.tasks import Example
from ernie_tiny.deploy.export import ExportOptions, export_checkpoint
from test_export import REVIEWS, make_checkpoint
from test_serve import start_server

REQUESTS = 200
SPACING_S = 0.005  # the burst: 200 requests 5 ms apart
SIGTERM_AT = REQUESTS // 2
BODY = json.dumps({"texts": [text for _, text in REVIEWS[:4]]}).encode()


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("faults")
    return export_checkpoint(make_checkpoint(workspace / "ckpt"), workspace / "onnx", ExportOptions(),
                             [Example(t, None, 0) for _, t in REVIEWS]).directory


def one_request(port: int, outcomes: list, index: int) -> None:
    """A fresh connection, one POST, the answer read to its end: the outcome goes to ``outcomes[index]``."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    except ConnectionRefusedError:
        outcomes[index] = "refused"
        return
    try:
        head = (f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(BODY)}\r\nConnection: close\r\n\r\n")
        sock.sendall(head.encode("latin-1") + BODY)
        response = http.client.HTTPResponse(sock, method="POST")
        response.begin()
        payload = response.read()
        outcomes[index] = response.status if response.status != 200 or b'"predictions"' in payload else "bad 200"
    except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected, http.client.IncompleteRead):
        outcomes[index] = "reset"
    except OSError as err:
        outcomes[index] = f"error {err!r}"
    finally:
        sock.close()


def burst_with_sigterm(export_dir) -> tuple[list, str, int]:
    """The outcome of each request, the server's output and its exit code."""
    process, url = start_server(export_dir, "--max-batch", "16", "--max-wait-ms", "2")
    port = int(url.rsplit(":", 1)[1])
    outcomes: list = [None] * REQUESTS
    threads = []
    try:
        started = time.monotonic()
        for index in range(REQUESTS):
            if index == SIGTERM_AT:
                process.send_signal(signal.SIGTERM)
            thread = threading.Thread(target=one_request, args=(port, outcomes, index), daemon=True)
            thread.start()
            threads.append(thread)
            time.sleep(max(0.0, started + (index + 1) * SPACING_S - time.monotonic()))
        for thread in threads:
            thread.join(timeout=60)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return outcomes, output, process.returncode


def test_sigterm_in_a_burst_drops_no_accepted_request(export_dir):
    outcomes, output, returncode = burst_with_sigterm(export_dir)
    assert returncode in (0, -signal.SIGTERM), output  # uvicorn re-raises the SIGTERM once shutdown is complete
    assert "Traceback" not in output, output
    counts = {outcome: outcomes.count(outcome) for outcome in set(outcomes)}
    assert set(counts) <= {200, "refused", "reset"}, counts  # nothing else: no 5xx, no half answer, no hang
    assert counts.get(200, 0) >= SIGTERM_AT // 2 and counts.get("refused", 0) > 0, counts  # it did stop mid-burst
    exit_line = re.search(r"answered at exit: (.*); connections: (\d+) accepted, (\d+) closed without a request",
                          output)
    assert exit_line, output
    answers = {key: int(count) for key, count in re.findall(r"(\S+ \d{3}): (\d+)", exit_line.group(1))}
    # the server's /metrics count of 200s is the client's, and no request got another answer
    assert answers.get("/v1/predict 200", 0) == counts.get(200, 0), (exit_line.group(0), counts)
    assert set(answers) <= {"/v1/predict 200", "/healthz 200"}, answers
    # every connection it accepted carried one request (Connection: close) and got its answer, so a reset
    # can only be a connection the kernel queued but the server never accepted (the listen backlog)
    assert int(exit_line.group(2)) == sum(answers.values()) and exit_line.group(3) == "0", (exit_line.group(0), counts)
