"""``torchrun --nproc_per_node 2`` (gloo, CPU) runs distillation to the end and only rank 0 writes.

Each process installs an audit hook (PEP 578) that records every file or folder it
creates, opens for writing, renames or removes under the run's output folder; rank 1's
record must be empty. Also unit tests of the single-process helpers.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from rich.console import Console

from ernie_tiny.training.distributed import (DistributedContext, all_gather_objects, all_reduce_sum, init_distributed,
                                             resolve_device, wrap_ddp)
from ernie_tiny.training.loop import LoopState, window_means
from ernie_tiny.tokenization.subword import train_subword_tokenizer
from ernie_tiny.tasks import load_split
from ernie_tiny.finetune import FinetuneConfig, finetune
from ernie_tiny.training.logging import read_metrics
from ernie_tiny.training.schedule import OptimConfig

DATA = Path(os.environ.get("ERNIE_TINY_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SENTI = DATA / "chnsenticorp_htl"

AUDIT_HOOK = '''
    import json, os, sys

    out_dir = os.path.abspath(sys.argv[1])  # the run's output folder: every write below it is recorded
    writes = []
    WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def record(event, args):
        if event == "open":
            path, mode, flags = args
            if isinstance(path, int) or path is None:
                return
            writing = bool((flags or 0) & WRITE_FLAGS) or any(c in (mode or "") for c in "wax+")
        elif event == "os.rename":  # os.rename and os.replace: record where the file lands
            path, writing = args[1], True
        elif event in ("os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree"):
            path, writing = args[0], True
        else:
            return
        if writing and os.path.abspath(os.fsdecode(path)).startswith(out_dir):
            writes.append([event, os.fsdecode(path)])

    sys.addaudithook(record)
'''

LAUNCHER = textwrap.dedent(AUDIT_HOOK + '''
    import torch
    torch.set_num_threads(1)
    from ernie_tiny.distill.config import DistillConfig
    from ernie_tiny.distill.losses import DistillLossWeights
    from ernie_tiny.distill.task import distill

    config = DistillConfig(teacher=sys.argv[2], task="chnsenticorp", data_dir=sys.argv[3], out_dir=out_dir,
                           student_preset="student-micro", student_tokenizer=sys.argv[4], stage="both", steps_intermediate=3,
                           steps_prediction=3, max_len=40, limit=24, augment=1, device="cpu",
                           optim={"batch_size": 4, "eval_every": 3, "save_every": 3, "log_every": 1, "lr": 1e-3},
                           loss_weights=DistillLossWeights(hard=0.5))
    distill(config)
    rank = os.environ["RANK"]
    with open(os.path.join(sys.argv[5], f"writes-rank{rank}.json"), "w") as f:
        json.dump(writes, f)
''')


def test_single_process_context_is_a_no_op(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = init_distributed("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.is_distributed, ctx.backend) == (0, 1, True, False, None)
    module = torch.nn.Linear(2, 2)
    assert wrap_ddp(module, ctx) is module
    assert all_reduce_sum([3.0, 4.0], ctx) == [3.0, 4.0]
    assert all_gather_objects({"a": 1}, ctx) == [{"a": 1}]


def test_loss_window_averages_each_term_over_the_steps_that_had_it():
    # two steps; the first was a batch of only augmented rows: no hard term
    state = LoopState(window_sums={"loss": 4.0, "loss_soft_ce": 3.0, "loss_hard_ce": 0.5},
                      window_counts={"loss": 2, "loss_soft_ce": 2, "loss_hard_ce": 1})
    ctx = DistributedContext(0, 1, 0, torch.device("cpu"))
    names = ["loss", "loss_soft_ce", "loss_hard_ce"]
    assert window_means(state, names, ctx) == {"loss": 2.0, "loss_soft_ce": 1.5, "loss_hard_ce": 0.5}
    assert window_means(LoopState(), ["loss"], ctx) == {}


def test_bad_environment_and_device_are_clear_errors(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two'"):
        init_distributed("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    assert resolve_device(None).type in ("cpu", "cuda")
    assert DistributedContext(1, 2, 1, torch.device("cpu")).is_main is False


@pytest.mark.skipif(not (SENTI / "train.tsv").is_file(), reason=f"real data not found at {SENTI} (set ERNIE_TINY_DATA)")
def test_torchrun_two_cpu_processes_finish_and_only_rank0_writes(tmp_path):
    teacher = tmp_path / "teacher"
    finetune(FinetuneConfig(task="chnsenticorp", out_dir=str(teacher), preset="teacher-micro", data_dir=str(SENTI),
                            max_len=40, limit=48, eval_limit=48, max_steps=4, optim=OptimConfig(lr=1e-3, batch_size=16, eval_every=4,
                                                                                save_every=4, seed=5)),
             Console(file=io.StringIO()))
    tokenizer = tmp_path / "tokenizer"
    train_subword_tokenizer([e.text_a for e in load_split("chnsenticorp", SENTI, "train")[:200]], tokenizer,
                            vocab_size=3000, character_coverage=0.9995)
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER, encoding="utf-8")
    out = tmp_path / "student"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(launcher),
               str(out), str(teacher / "best"), str(SENTI), str(tokenizer), str(tmp_path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == {"intermediate": 3, "prediction": 3}
    assert (out / "best" / "config.json").is_file() and (out / "last.pt").is_file()
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl") if r["split"] == "train"] == list(range(1, 7))
    rank0 = json.loads((tmp_path / "writes-rank0.json").read_text())
    rank1 = json.loads((tmp_path / "writes-rank1.json").read_text())
    assert any(path.endswith("last.pt") for _, path in rank0) and any("best" in path for _, path in rank0)
    assert rank1 == []


CLI_LAUNCHER = textwrap.dedent(AUDIT_HOOK + '''
    import runpy

    record_dir = sys.argv[2]
    sys.argv = ["ernie-tiny", *sys.argv[3:]]
    try:
        runpy.run_module("ernie_tiny", run_name="__main__")
    except SystemExit as done:
        if done.code not in (0, None):
            raise
    with open(os.path.join(record_dir, "writes-rank" + os.environ.get("RANK", "0") + ".json"), "w") as f:
        json.dump(writes, f)
''')


def test_finetune_under_torchrun_equals_one_process_with_the_same_global_batch(tmp_path):
    """2 gloo processes x batch 4 against 1 process x batch 8, from a dropout-free init (dropout masks differ
    between the two layouts, everything else must not): same weights to 1e-5 (float sums in another order)."""
    from ernie_tiny.checkpoint import load_pretrained, save_pretrained
    from ernie_tiny.model import ErnieConfig, build_model
    from ernie_tiny.tokenization.char import CharTokenizer

    texts = [e.text_a for e in load_split("reviews", None, "train")[:200]]
    tokenizer = CharTokenizer.from_texts(texts)
    config = ErnieConfig.from_preset("teacher-micro", vocab_size=tokenizer.vocab_size, hidden_dropout=0.0,
                                     attention_dropout=0.0)
    torch.manual_seed(0)
    save_pretrained(build_model(config, "sequence_classification", 2), tmp_path / "init", tokenizer, "reviews",
                    ["negative", "positive"])
    launcher = tmp_path / "launch.py"
    launcher.write_text(CLI_LAUNCHER, encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = ["teacher", "finetune", "--init", str(tmp_path / "init"), "--task", "reviews", "--limit", "48", "--eval-limit", "48",
              "--max-steps", "4", "--eval-every", "2", "--lr", "1e-3", "--max-len", "32", "--device", "cpu"]
    two, one = tmp_path / "two", tmp_path / "one"
    (tmp_path / "rec2").mkdir()
    (tmp_path / "rec1").mkdir()
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(launcher), str(two), str(tmp_path / "rec2"), *common, "--batch-size", "4",
                           "--out", str(two)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    done = subprocess.run([sys.executable, str(launcher), str(one), str(tmp_path / "rec1"), *common,
                           "--batch-size", "8", "--out", str(one)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    metrics = json.loads((two / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and json.loads((one / "metrics.json").read_text())["world_size"] == 1
    rank0 = json.loads((tmp_path / "rec2" / "writes-rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rec2" / "writes-rank1.json").read_text())
    assert any(p.endswith("last.pt") for _, p in rank0) and any("best" in p for _, p in rank0) and rank1 == []
    weights_two = torch.load(two / "last.pt", weights_only=True)["model"]
    weights_one = torch.load(one / "last.pt", weights_only=True)["model"]
    assert weights_two.keys() == weights_one.keys()
    worst = max((weights_two[k] - weights_one[k]).abs().max().item() for k in weights_one)
    assert worst < 1e-5, worst
    init = load_pretrained(tmp_path / "init").model.state_dict()
    moved = max((weights_one[k] - init[k]).abs().max().item() for k in init)
    assert moved > 100 * worst  # the runs trained: equal weights are not just the init twice


def test_pretrain_under_torchrun_two_processes_read_their_own_shares(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(e.text_a for e in load_split("reviews", None, "train")[:64]) + "\n", encoding="utf-8")
    launcher = tmp_path / "launch.py"
    launcher.write_text(CLI_LAUNCHER, encoding="utf-8")
    out = tmp_path / "pretrain"
    (tmp_path / "rec").mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(launcher), str(out), str(tmp_path / "rec"), "pretrain", "--preset", "teacher-micro",
                           "--corpus", str(corpus), "--max-steps", "4", "--eval-every", "2", "--eval-examples", "16",
                           "--batch-size", "4", "--max-len", "48", "--device", "cpu", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 4
    rank0 = json.loads((tmp_path / "rec" / "writes-rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rec" / "writes-rank1.json").read_text())
    assert any(p.endswith("last.pt") for _, p in rank0) and any("best" in p for _, p in rank0) and rank1 == []
    # the two ranks trained on disjoint samples of the stream: step s, rank r reads samples (2 s + r) * 4 + j
    from ernie_tiny.pretrain.batches import sample_index
    assert {sample_index(0, 0, 2, 4, j) for j in range(4)}.isdisjoint({sample_index(0, 1, 2, 4, j) for j in range(4)})
