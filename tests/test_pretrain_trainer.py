"""``ernie-tiny pretrain`` end to end on micro presets: CLI, resume, the checkpoint it leaves, bad corpora."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from ernie_tiny.checkpoint import load_pretrained
from ernie_tiny.cli import app
from ernie_tiny.finetune import FinetuneConfig, finetune
from ernie_tiny.heads import HeadKind
from ernie_tiny.pretrain.trainer import PretrainConfig, pretrain
from ernie_tiny.training.logging import read_metrics
from ernie_tiny.training.schedule import OptimConfig

ARTICLES = [
    "新华社北京电。国务院总理李鹏今天在人民大会堂会见了日本客人。双方就经济合作交换了意见。",
    "上海市政府宣布扩大开放。浦东新区的外资企业超过五千家。市长表示将继续改善投资环境。",
    "这家酒店的服务很好，房间干净。早餐种类很多，下次还会再来。",
    "手机电池不耐用，一天要充两次电。客服态度也不好，不推荐购买。",
]


def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(ARTICLES * 6) + "\n", encoding="utf-8")
    return path


def micro_config(out: Path, corpus: Path, **overrides) -> PretrainConfig:
    values = dict(out_dir=str(out), preset="teacher-micro", corpus=[str(corpus)], max_len=48, max_steps=6,
                  eval_examples=16, eval_batch_size=8, data_workers=0, vocab_min_freq=1,
                  optim=OptimConfig(lr=1e-3, batch_size=8, eval_every=3, save_every=2, log_every=1, seed=5))
    return PretrainConfig(**{**values, **overrides})


def test_cli_pretrains_and_the_checkpoint_fine_tunes(tmp_path, corpus):
    out = tmp_path / "pretrain"
    result = CliRunner().invoke(app, ["pretrain", "--preset", "teacher-micro", "--corpus", str(corpus),
                                      "--objectives", "mlm,sentence-distance", "--max-steps", "4", "--eval-every", "2",
                                      "--eval-examples", "16", "--batch-size", "8", "--max-len", "48",
                                      "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "objectives mlm, sentence-distance" in result.output and "1 process(es) on cpu, fp32" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["best_step"] in (2, 4) and metrics["documents"] == len(ARTICLES) * 6
    assert set(metrics["dev"]) == {"mlm_accuracy", "mlm_loss", "sentence_distance_accuracy"}
    train = [r for r in read_metrics(out / "metrics.jsonl") if r["split"] == "train"]
    assert all(r["loss_masked_lm"] > 0 and "loss_sentence_distance" in r for r in train)
    for name in ("loss_curve.png", "last.pt", "tokenizer/vocab.txt", "best/config.json"):
        assert (out / name).is_file(), name
    best = load_pretrained(out / "best")
    assert best.meta.head is HeadKind.masked_lm and best.config.use_task_id  # ERNIE 2.0 task-type embeddings
    assert best.meta.extra["pretrain_config"]["masking"]["mask_rate"] == 0.15  # the unit mix is in the checkpoint

    teacher = finetune(FinetuneConfig(task="reviews", out_dir=str(tmp_path / "teacher"), init=str(out / "best"),
                                      max_len=32, limit=24, eval_limit=24, max_steps=2,
                                      optim=OptimConfig(lr=1e-3, batch_size=8, eval_every=2)), quiet())
    assert "masked_lm [] replaced by sequence_classification" in teacher.source
    fine_tuned = load_pretrained(teacher.best_dir).model.ernie.embeddings.word_embeddings.weight
    assert fine_tuned.shape == best.model.ernie.embeddings.word_embeddings.weight.shape

    # Baidu's recipe: the pretrained teacher -> general distillation -> a student to start task distillation from
    general = CliRunner().invoke(app, ["distill-general", "--teacher", str(out / "best"), "--corpus", str(corpus),
                                       "--student-preset", "student-micro", "--student-tokenizer", "char",
                                       "--steps", "2", "--batch-size", "8", "--max-len", "48", "--device", "cpu",
                                       "--out", str(tmp_path / "general")])
    assert general.exit_code == 0, general.output
    student = load_pretrained(tmp_path / "general" / "student")
    assert student.meta.head is HeadKind.encoder and student.config.num_layers == 3


def test_resume_after_a_crash_gives_the_same_weights(tmp_path, corpus):
    straight = pretrain(micro_config(tmp_path / "a", corpus), quiet())

    class Crash(Exception):
        pass

    def crash(step: int) -> None:
        if step == 5:
            raise Crash  # last.pt holds step 4

    with pytest.raises(Crash):
        pretrain(micro_config(tmp_path / "b", corpus), quiet(), after_step=crash)
    with pytest.raises(ValueError, match="cannot resume.*optim.lr"):
        pretrain(micro_config(tmp_path / "b", corpus, resume=True, optim=OptimConfig(lr=2e-3, batch_size=8)), quiet())
    resumed = pretrain(micro_config(tmp_path / "b", corpus, resume=True), quiet())
    expected = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    found = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(expected[k], found[k]) for k in expected)
    assert resumed.dev == straight.dev and resumed.best_step == straight.best_step
    steps = [r["step"] for r in read_metrics(tmp_path / "b" / "metrics.jsonl") if r["split"] == "train"]
    assert steps == list(range(1, 7))


def test_a_data_worker_gives_the_same_run(tmp_path, corpus):
    inline = pretrain(micro_config(tmp_path / "inline", corpus, max_steps=3), quiet())
    worker = pretrain(micro_config(tmp_path / "worker", corpus, max_steps=3, data_workers=1), quiet())
    assert inline.dev == worker.dev


def test_bad_corpus_and_options_are_one_line_errors(tmp_path, corpus):
    gbk = tmp_path / "gbk.txt"
    gbk.write_bytes("第一行\n".encode("utf-8") + "酒店很好\n".encode("gbk"))
    result = CliRunner().invoke(app, ["pretrain", "--preset", "teacher-micro", "--corpus", str(gbk),
                                      "--device", "cpu", "--out", str(tmp_path / "bad")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{gbk}:2" in result.output
    missing = CliRunner().invoke(app, ["pretrain", "--preset", "teacher-micro", "--corpus", str(tmp_path / "none"),
                                       "--device", "cpu", "--out", str(tmp_path / "bad2")])
    # a missing path is refused while the options are parsed: click's usage error (exit 2) names it
    assert missing.exit_code == 2 and "none" in missing.output and "--corpus" in missing.output
    assert "Traceback" not in missing.output
    mix = CliRunner().invoke(app, ["pretrain", "--preset", "teacher-micro", "--corpus", str(corpus),
                                   "--unit-mix", "0.5,0.5", "--device", "cpu", "--out", str(tmp_path / "bad3")])
    assert mix.exit_code == 1 and "--unit-mix" in mix.output
    with pytest.raises(ValueError, match="exactly one of --preset"):
        micro_config(tmp_path, corpus, init=str(tmp_path))
    with pytest.raises(ValueError, match="must include mlm"):
        micro_config(tmp_path, corpus, objectives=["sentence-distance"])
