"""Teacher fine-tuning end to end on micro presets: CLI, exact resume, reload, heads, guards."""

from __future__ import annotations

import io
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import typer
from rich.console import Console
from typer.testing import CliRunner

from ernie_tiny.checkpoint import load_pretrained, save_pretrained
from ernie_tiny.commands.finetune import finetune as finetune_command
from ernie_tiny.model import ErnieConfig, build_model
from ernie_tiny.tasks.batches import collate
from ernie_tiny.tasks import get_task
from ernie_tiny.tokenization.char import CharTokenizer
from ernie_tiny.finetune import FinetuneConfig, finetune, prepare, with_new_vocab, with_task_head
from ernie_tiny.training.inference import predict
from ernie_tiny.training.logging import read_metrics
from ernie_tiny.training.schedule import OptimConfig

DATA = Path(os.environ.get("ERNIE_TINY_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))



app = typer.Typer()
app.command()(finetune_command)


def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


def micro_config(out_dir: Path, **overrides) -> FinetuneConfig:
    optim = OptimConfig(lr=1e-3, batch_size=8, eval_every=4, save_every=3, log_every=2, seed=7)
    values = dict(task="reviews", out_dir=str(out_dir), preset="teacher-micro", max_len=32, limit=40, eval_limit=40,
                  max_steps=8,
                  optim=optim)
    return FinetuneConfig(**{**values, **overrides})


def state_weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def copy_head_rows(source: Path, target: Path, rows: int) -> Path:
    """The header and first ``rows`` rows of each split: a few real rows in a temp folder."""
    target.mkdir()
    for split in ("train", "dev", "test"):
        lines = (source / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[:rows + 1]
        (target / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def test_cli_micro_finetune_on_real_chnsenticorp_rows(tmp_path):
    if not (DATA / "chnsenticorp_htl" / "train.tsv").is_file():
        pytest.skip(f"real task data not found at {DATA} (set ERNIE_TINY_DATA)")
    data_dir = copy_head_rows(DATA / "chnsenticorp_htl", tmp_path / "data", rows=32)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["--preset", "teacher-micro", "--task", "chnsenticorp", "--data-dir",
                                      str(data_dir), "--max-steps", "6", "--eval-every", "3", "--batch-size", "8",
                                      "--max-len", "48", "--lr", "1e-3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "teacher: preset teacher-micro: 12 layers, hidden 48" in result.output
    assert "truncated to 48 tokens" in result.output
    unwrapped = "".join(result.output.split())  # rich wraps long lines (and long paths) at 80 columns
    assert f"charvocabfrom{data_dir}train" in unwrapped  # the data folder, not the --task name
    assert f"examplesof{data_dir}:train32" in unwrapped
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["preset"] == "teacher-micro" and metrics["steps"] == 6 and metrics["best_step"] in (3, 6)
    assert metrics["examples"] == {"train": 32, "dev": 32, "test": 32}
    assert set(metrics["dev"]) == {"accuracy", "macro_f1"} and 0.0 <= metrics["test"]["accuracy"] <= 1.0
    assert metrics["truncated"]["train"] > 0  # hotel reviews are longer than 48 chars
    for name in ("loss_curve.png", "metrics.csv", "last.pt", "best/config.json", "tokenizer/vocab.txt"):
        assert (out / name).is_file(), name
    best = load_pretrained(out / "best")
    assert best.meta.task == "chnsenticorp" and best.meta.labels == ["negative", "positive"]
    assert best.meta.extra["step"] == metrics["best_step"] and best.meta.extra["dev"] == metrics["dev"]
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl") if r["split"] == "dev"] == [3, 6]


def test_cli_errors_are_one_line_with_exit_code_1(tmp_path):
    both = CliRunner().invoke(app, ["--preset", "teacher-micro", "--init", str(tmp_path), "--out", str(tmp_path)])
    assert both.exit_code == 1 and "give exactly one of --preset" in both.output and "Traceback" not in both.output
    no_data = CliRunner().invoke(app, ["--preset", "teacher-micro", "--task", "lcqmc", "--out", str(tmp_path)])
    assert no_data.exit_code == 1 and "task lcqmc needs --data-dir" in no_data.output
    bad_row = tmp_path / "data"
    bad_row.mkdir()
    (bad_row / "train.tsv").write_text("text_a\ttext_b\tlabel\n一\t二\t1\n三\t四\n", encoding="utf-8")
    (bad_row / "dev.tsv").write_text("text_a\ttext_b\tlabel\n一\t二\t1\n", encoding="utf-8")
    bad = CliRunner().invoke(app, ["--preset", "teacher-micro", "--task", "lcqmc", "--data-dir", str(bad_row),
                                   "--out", str(tmp_path / "run")])
    assert bad.exit_code == 1 and "train.tsv:3: expected 3 TAB-separated fields, got 2" in bad.output


def test_resume_after_a_crash_gives_the_same_weights(tmp_path):
    uninterrupted = finetune(micro_config(tmp_path / "a"), quiet())

    class Crash(Exception):
        pass

    def crash_after_5(done: int) -> None:
        if done == 5:
            raise Crash  # last.pt holds step 3; steps 4-5 are lost and redone

    with pytest.raises(Crash):
        finetune(micro_config(tmp_path / "b"), quiet(), after_step=crash_after_5)
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=True)["step"] == 3
    with pytest.raises(ValueError, match="exists: add --resume to continue that run, --overwrite to start over"):
        finetune(micro_config(tmp_path / "b"), quiet())
    with pytest.raises(ValueError, match="--resume and --overwrite exclude each other"):
        micro_config(tmp_path / "b", resume=True, overwrite=True)
    with pytest.raises(ValueError, match="cannot resume: the run was started with different optim.lr"):
        finetune(micro_config(tmp_path / "b", resume=True, optim=replace(micro_config(tmp_path).optim, lr=2e-3)),
                 quiet())
    resumed = finetune(micro_config(tmp_path / "b", resume=True), quiet())

    expected, found = state_weights(tmp_path / "a" / "last.pt"), state_weights(tmp_path / "b" / "last.pt")
    assert expected.keys() == found.keys()
    assert all(torch.equal(expected[k], found[k]) for k in expected)
    assert resumed.dev == uninterrupted.dev and resumed.best_step == uninterrupted.best_step
    losses = [[r["loss"] for r in read_metrics(d / "metrics.jsonl") if r["split"] == "train"]
              for d in (tmp_path / "a", tmp_path / "b")]
    assert losses[0] == losses[1] and len(losses[0]) == 4  # logged at steps 2, 4, 6, 8, none twice


def test_reloaded_best_checkpoint_gives_the_same_dev_predictions(tmp_path):
    config = micro_config(tmp_path, max_steps=4, optim=OptimConfig(lr=1e-3, batch_size=8, eval_every=4, seed=1))
    result = finetune(config, quiet())  # one evaluation, at the last step: best = final weights
    prepared = prepare(config, quiet())
    reloaded = load_pretrained(tmp_path / "best")
    assert reloaded.tokenizer.vocab == prepared.tokenizer.vocab
    last = build_model(reloaded.config, reloaded.meta.head, len(reloaded.meta.labels))
    last.load_state_dict(state_weights(tmp_path / "last.pt"))

    def dev_outputs(model):
        return predict(model, prepared.encoded["dev"].items,
                       lambda items: collate(prepared.task, items, 0), 16)

    for before, after in zip(dev_outputs(last), dev_outputs(reloaded.model)):
        assert (before == after).all()
    assert json.loads((tmp_path / "metrics.json").read_text())["dev"] == result.dev
    assert [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["split"] == "dev"][-1]["accuracy"] \
        == result.dev["accuracy"]


def test_bf16_on_cpu_trains_a_few_steps(tmp_path):
    config = micro_config(tmp_path, max_steps=3, optim=OptimConfig(lr=1e-3, batch_size=8, eval_every=3,
                                                                   precision="bf16"))
    result = finetune(config, quiet())
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["precision"] == "bf16" and result.steps == 3
    weights = state_weights(tmp_path / "last.pt")
    assert all(w.dtype == torch.float32 and torch.isfinite(w).all() for w in weights.values())  # fp32 master weights


@pytest.mark.parametrize("task, header, rows", [
    ("lcqmc", "text_a\ttext_b\tlabel", ["怎么去北京\t去北京怎么走\t1", "今天天气\t明天吃啥\t0"]),
    ("nlpcc-dbqa", "qid\ttext_a\ttext_b\tlabel", ["1\t谁写的红楼梦\t曹雪芹写了红楼梦\t1", "1\t谁写的红楼梦\t北京很大\t0"]),
    ("msra-ner", "text_a\tlabel", ["张 三 去 北 京\tB-PER I-PER O B-LOC I-LOC", "新 华 社 说\tB-ORG I-ORG I-ORG O"]),
])
def test_every_head_trains_and_evaluates(tmp_path, task, header, rows):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for split in ("train", "dev"):  # no test.tsv: test is optional
        (data_dir / f"{split}.tsv").write_text("\n".join([header] + rows * 4) + "\n", encoding="utf-8")
    config = micro_config(tmp_path / "run", task=task, data_dir=str(data_dir),
                          max_steps=2, optim=OptimConfig(lr=1e-3, batch_size=4, eval_every=2))
    result = finetune(config, quiet())
    assert result.test is None and set(result.dev) == {"accuracy": {"accuracy", "macro_f1"},
                                                       "mrr": {"mrr", "f1", "accuracy"},
                                                       "f1": {"f1", "precision", "recall"}}[get_task(task).main_metric]
    assert load_pretrained(result.best_dir).meta.head is get_task(task).head


def test_init_from_a_checkpoint_replaces_a_mismatched_head(tmp_path):
    tokenizer = CharTokenizer.from_texts(["张三去北京", "很好"])
    config = ErnieConfig.from_preset("teacher-micro", vocab_size=tokenizer.vocab_size)
    ner_model = build_model(config, "token_classification", 7)
    save_pretrained(ner_model, tmp_path / "ner", tokenizer, "msra-ner", list(get_task("msra-ner").labels))
    loaded = load_pretrained(tmp_path / "ner")
    model, note = with_task_head(loaded, get_task("reviews"), seed=0)
    assert note.startswith("head token_classification") and model.classifier.out_features == 2
    assert all(torch.equal(a, b) for a, b in zip(model.ernie.state_dict().values(),
                                                  ner_model.ernie.state_dict().values()))
    same, kept = with_task_head(loaded, get_task("msra-ner"), seed=0)
    assert same is loaded.model and kept == "head kept"

    result = finetune(micro_config(tmp_path / "run", preset=None, init=str(tmp_path / "ner"),
                                   max_steps=2, optim=OptimConfig(lr=1e-3, batch_size=4, eval_every=2)), quiet())
    assert "replaced by sequence_classification" in result.source


def test_vocab_from_train_keeps_the_rows_of_known_chars():
    old = CharTokenizer.from_texts(["张三李四"])
    new = CharTokenizer.from_texts(["李四王五五"])
    model = build_model(ErnieConfig.from_preset("teacher-micro", vocab_size=old.vocab_size), "sequence_classification")
    rebuilt = with_new_vocab(model, old, new, seed=0)
    old_rows = model.ernie.embeddings.word_embeddings.weight
    new_rows = rebuilt.ernie.embeddings.word_embeddings.weight
    assert new_rows.shape[0] == new.vocab_size
    for char in ("李", "四", "[CLS]"):
        assert torch.equal(new_rows[new.vocab[char]], old_rows[old.vocab[char]])
    assert not torch.equal(new_rows[new.vocab["王"]], old_rows[old.vocab["张"]])
    assert torch.equal(rebuilt.classifier.weight, model.classifier.weight)
