"""Task and general distillation end to end on micro presets and a few real ChnSentiCorp rows.

Both stages run and log every term, the best student reloads and predicts, a resumed run
ends with the weights of an uninterrupted one, the char-student ablation and labels-only
baseline run, general distillation produces a usable --student-init, and the teacher
cache returns what the teacher computes.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
import torch
import typer
from rich.console import Console
from typer.testing import CliRunner

from ernie_tiny.cli import app as cli_app
from ernie_tiny.checkpoint import load_pretrained
from ernie_tiny.commands.distill import distill as distill_command
from ernie_tiny.distill.align import build_alignment
from ernie_tiny.distill.config import DistillConfig, GeneralDistillConfig, Stage
from ernie_tiny.distill.data import build_items, collate_distill
from ernie_tiny.distill.teacher import TeacherCache, TeacherTargets, mapped_layers, teacher_cache
from ernie_tiny.distill.general import distill_general
from ernie_tiny.distill.layer_map import layer_map_preset
from ernie_tiny.distill.losses import DistillLossWeights
from ernie_tiny.distill.task import distill
from ernie_tiny.model import ErnieConfig, HeadKind
from ernie_tiny.tokenization.subword import train_subword_tokenizer
from ernie_tiny.tasks import load_split
from ernie_tiny.finetune import FinetuneConfig, finetune
from ernie_tiny.tokenization.load import load_tokenizer
from ernie_tiny.training.logging import read_metrics
from ernie_tiny.training.schedule import OptimConfig

DATA = Path(os.environ.get("ERNIE_TINY_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SENTI = DATA / "chnsenticorp_htl"
pytestmark = pytest.mark.skipif(not (SENTI / "train.tsv").is_file(),
                                reason=f"real data not found at {SENTI} (set ERNIE_TINY_DATA)")


def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> Path:
    """A teacher-micro fine-tuned for a few steps on the first ChnSentiCorp rows."""
    out = tmp_path_factory.mktemp("teacher")
    config = FinetuneConfig(task="chnsenticorp", out_dir=str(out), preset="teacher-micro", data_dir=str(SENTI),
                            max_len=40, limit=64, eval_limit=64, max_steps=6, optim=OptimConfig(lr=1e-3, batch_size=16, eval_every=6,
                                                                                save_every=6, seed=3))
    finetune(config, quiet())
    return out / "best"


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A small subword tokenizer trained on 200 real review texts (the real default trains on the embedded corpus)."""
    out = tmp_path_factory.mktemp("tokenizer") / "tok"
    texts = [e.text_a for e in load_split("chnsenticorp", SENTI, "train")[:200]]
    train_subword_tokenizer(texts, out, vocab_size=3000, character_coverage=0.9995)
    return out


OPTIM_FIELDS = {"lr", "batch_size", "grad_accum", "precision", "eval_every", "save_every", "log_every", "seed"}


def micro_config(teacher_dir: Path, tokenizer_dir: Path | str, out_dir: Path, **overrides) -> DistillConfig:
    optim = dict(batch_size=8, eval_every=2, save_every=2, log_every=1, lr=1e-3, seed=11)
    optim.update({k: v for k, v in overrides.items() if k in OPTIM_FIELDS})
    values = dict(teacher=str(teacher_dir), task="chnsenticorp", data_dir=str(SENTI), out_dir=str(out_dir),
                  student_preset="student-micro", student_tokenizer=str(tokenizer_dir), stage=Stage.both,
                  steps_intermediate=4, steps_prediction=4, max_len=40, limit=24, eval_limit=24,
                  optim=OptimConfig(**optim))
    return DistillConfig(**{**values, **{k: v for k, v in overrides.items() if k not in OPTIM_FIELDS}})


def state_weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_both_stages_log_every_term_and_best_student_reloads(teacher_dir, tokenizer_dir, tmp_path):
    out = tmp_path / "student"
    result = distill(micro_config(teacher_dir, tokenizer_dir, out, augment=1), quiet())

    records = read_metrics(out / "metrics.jsonl")
    train = [r for r in records if r["split"] == "train"]
    assert [r["step"] for r in train] == list(range(1, 9))
    intermediate = [r for r in train if r["stage"] == "intermediate"]
    prediction = [r for r in train if r["stage"] == "prediction"]
    assert len(intermediate) == 4 and len(prediction) == 4
    for name in ("loss_embeddings", "loss_hidden_l1", "loss_hidden_l3", "loss_attention_l1", "loss_attention_l3"):
        assert all(r[name] > 0 for r in intermediate), name
    assert all(r["loss_soft_ce"] > 0 and "loss_hidden_l1" not in r for r in prediction)
    assert [r["step"] for r in records if r["split"] == "dev"] == [6, 8]
    assert (out / "metrics.csv").read_text().startswith("step,split")
    assert (out / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["examples"]["augmented"] > 0
    assert metrics["steps"] == {"intermediate": 4, "prediction": 4}
    assert metrics["presets"] == {"teacher": "teacher-micro", "student": "student-micro"}
    teacher_acc = metrics["teacher"]["test"]["accuracy"]
    assert metrics["retention_pct"]["test"] == pytest.approx(100 * metrics["student"]["test"]["accuracy"] / teacher_acc)
    assert result.student_dir == out / "best"

    best = load_pretrained(out / "best")
    assert best.meta.head is HeadKind.sequence_classification and best.meta.task == "chnsenticorp"
    assert best.tokenizer.kind == "subword" and best.config.preset == "student-micro"
    assert best.meta.extra["distill_config"]["steps_intermediate"] == 4
    encoding = best.tokenizer.encode("房间很干净，服务也好")
    logits = best.model.eval()(torch.tensor([encoding.input_ids])).logits
    assert logits.shape == (1, 2) and torch.isfinite(logits).all()
    assert load_pretrained(out / "intermediate").config.num_layers == 3


@pytest.mark.parametrize("crash_at", [3, 6])  # inside the intermediate stage, inside the prediction stage
def test_resume_equals_uninterrupted(teacher_dir, tokenizer_dir, tmp_path, crash_at):
    straight = tmp_path / "straight"
    distill(micro_config(teacher_dir, tokenizer_dir, straight, save_every=1), quiet())

    crashed = tmp_path / "crashed"

    def crash(step: int) -> None:
        if step == crash_at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        distill(micro_config(teacher_dir, tokenizer_dir, crashed, save_every=1), quiet(), after_step=crash)
    assert not (crashed / "metrics.json").exists()
    distill(micro_config(teacher_dir, tokenizer_dir, crashed, save_every=1, resume=True), quiet())

    expected, found = state_weights(straight / "last.pt"), state_weights(crashed / "last.pt")
    assert expected.keys() == found.keys()
    for name in expected:
        # Bit for bit: the teacher cache is filled in fixed chunks, whatever order a run needs its items in.
        assert torch.equal(expected[name], found[name]), name
    steps = [r["step"] for r in read_metrics(crashed / "metrics.jsonl") if r["split"] == "train"]
    assert steps == list(range(1, 9))  # records after the crash point were replaced, not repeated


def test_resume_refuses_changed_options(teacher_dir, tokenizer_dir, tmp_path):
    out = tmp_path / "run"
    distill(micro_config(teacher_dir, tokenizer_dir, out, steps_intermediate=2, steps_prediction=2), quiet())
    with pytest.raises(ValueError, match="exists: add --resume"):
        distill(micro_config(teacher_dir, tokenizer_dir, out, steps_intermediate=2, steps_prediction=2), quiet())
    with pytest.raises(ValueError, match="cannot resume.*lr"):
        distill(micro_config(teacher_dir, tokenizer_dir, out, steps_intermediate=2, steps_prediction=2, lr=5e-3,
                             resume=True), quiet())
    # --overwrite starts that folder over, like every trainer's
    distill(micro_config(teacher_dir, tokenizer_dir, out, steps_intermediate=1, steps_prediction=3, overwrite=True),
            quiet())
    assert json.loads((out / "metrics.json").read_text(encoding="utf-8"))["steps"] == {"intermediate": 1,
                                                                                         "prediction": 3}


def test_char_student_ablation_uses_the_teacher_tokens(teacher_dir, tmp_path):
    out = tmp_path / "char"
    distill(micro_config(teacher_dir, "char", out), quiet())
    best = load_pretrained(out / "best")
    teacher = load_pretrained(teacher_dir)
    assert best.tokenizer.kind == "char" and best.config.vocab_size == teacher.config.vocab_size
    first = [r for r in read_metrics(out / "metrics.jsonl") if r["split"] == "train"][0]
    assert first["loss_attention_l1"] > 0 and first["loss_hidden_l1"] > 0


def test_joint_stage_sums_both_objectives_at_every_step(teacher_dir, tokenizer_dir, tmp_path):
    out = tmp_path / "joint"
    distill(micro_config(teacher_dir, tokenizer_dir, out, stage=Stage.joint), quiet())
    train = [r for r in read_metrics(out / "metrics.jsonl") if r["split"] == "train"]
    assert [r["stage"] for r in train] == ["joint"] * 4
    for record in train:
        terms = ["loss_embeddings", "loss_hidden_l1", "loss_hidden_l3", "loss_attention_l3", "loss_soft_ce"]
        assert all(record[name] > 0 for name in terms)
        assert record["loss"] == pytest.approx(sum(record[name] for name in record if name.startswith("loss_")),
                                               rel=1e-4)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == {"joint": 4}
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl") if r["split"] == "dev"] == [2, 4]
    assert (out / "best").is_dir() and not (out / "intermediate").exists()


def test_student_reads_only_the_text_the_teacher_kept(teacher_dir, tokenizer_dir):
    teacher_tokenizer = load_pretrained(teacher_dir).tokenizer
    student_tokenizer = load_tokenizer(tokenizer_dir)
    long_a, long_b = [e.text_a for e in load_split("chnsenticorp", SENTI, "dev") if len(e.text_a) > 80][:2]
    pairs = [(long_a, None), (long_a, long_b), ("房间很干净", None)]
    items = build_items(pairs, [0, 1, 0], teacher_tokenizer, student_tokenizer, max_len=32)
    for item, (text_a, text_b) in zip(items, pairs):
        seen = [0, 0]
        for span in item.teacher.spans:
            if not span.is_special:
                seen[span.text_index] = max(seen[span.text_index], span.end)
        assert item.teacher.truncated == (text_a != "房间很干净")
        expected = student_tokenizer.encode(text_a[:seen[0]], None if text_b is None else text_b[:seen[1]], max_len=32)
        if not item.teacher.truncated:
            expected = student_tokenizer.encode(text_a, text_b, max_len=32)
        assert item.student.input_ids == expected.input_ids and item.student.spans == expected.spans
        assert not item.student.truncated and len(item.student) < len(item.teacher)
        # Nothing read past the teacher's cut, so more student tokens have a teacher target than
        # when the student reads its own max_len (the rest are [UNK]s of the tiny test vocabularies).
        assert all(span.end <= seen[span.text_index] for span in item.student.spans if not span.is_special)
        if item.teacher.truncated:
            uncut_student = student_tokenizer.encode(text_a, text_b, max_len=32)
            uncut_valid = build_alignment(uncut_student, item.teacher, texts=(text_a, text_b)).valid
            assert item.alignment.valid.mean() > uncut_valid.mean()


def test_labels_only_baseline_never_needs_teacher_logits(teacher_dir, tokenizer_dir, tmp_path):
    out = tmp_path / "labels"
    weights = DistillLossWeights(soft=0.0, hard=1.0)
    distill(micro_config(teacher_dir, tokenizer_dir, out, stage=Stage.prediction, loss_weights=weights), quiet())
    train = [r for r in read_metrics(out / "metrics.jsonl") if r["split"] == "train"]
    assert all("loss_soft_ce" not in r and r["loss_hard_ce"] > 0 for r in train)
    assert not (out / "intermediate").exists() and (out / "best").is_dir()


def test_general_distillation_gives_a_student_init(teacher_dir, tokenizer_dir, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(e.text_a for e in load_split("chnsenticorp", SENTI, "dev")[:40]) + "\n\n",
                      encoding="utf-8")
    general = distill_general(GeneralDistillConfig(teacher=str(teacher_dir), out_dir=str(tmp_path / "general"),
                                                   corpus=str(corpus), student_preset="student-micro",
                                                   student_tokenizer=str(tokenizer_dir), steps=3, max_len=40,
                                                   optim=OptimConfig(batch_size=8, save_every=2, log_every=1)),
                            quiet())
    assert general.texts == 40
    encoder = load_pretrained(general.student_dir)
    assert encoder.meta.head is HeadKind.encoder and encoder.tokenizer.kind == "subword"
    losses = [r["loss"] for r in read_metrics(tmp_path / "general" / "metrics.jsonl") if r["split"] == "train"]
    assert len(losses) == 3

    out = tmp_path / "from-general"
    distill(micro_config(teacher_dir, None, out, student_tokenizer=None, student_preset=None,
                         student_init=str(general.student_dir), stage=Stage.prediction), quiet())
    best = load_pretrained(out / "best")
    assert best.tokenizer.kind == "subword" and best.config.vocab_size == encoder.config.vocab_size
    # The prediction stage moved the encoder away from the general-distilled weights it started from.
    name = "layers.0.ffn.fc_in.weight"
    assert not torch.equal(best.model.ernie.state_dict()[name], encoder.model.state_dict()[name])


def test_general_distillation_reports_the_steps_a_time_budget_ran(teacher_dir, tokenizer_dir, tmp_path):
    """Under --max-minutes the loop fixes fewer steps than --steps: metrics.json, the result and the
    student's checkpoint say how many ran, not how many were asked for."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(e.text_a for e in load_split("chnsenticorp", SENTI, "dev")[:24]) + "\n", encoding="utf-8")
    out = tmp_path / "budget"
    general = distill_general(GeneralDistillConfig(teacher=str(teacher_dir), out_dir=str(out), corpus=str(corpus),
                                                   student_preset="student-micro", student_tokenizer=str(tokenizer_dir),
                                                   steps=400, max_len=24,
                                                   optim=OptimConfig(batch_size=4, save_every=1000, log_every=1,
                                                                     max_minutes=1e-4)),  # 6 ms: plan at calibration
                              quiet())
    ran = len([r for r in read_metrics(out / "metrics.jsonl") if r["split"] == "train"])
    assert ran < 400
    assert general.steps == ran == json.loads((out / "metrics.json").read_text(encoding="utf-8"))["steps"]


def test_teacher_cache_returns_the_teacher_outputs(teacher_dir, tokenizer_dir):
    teacher = load_pretrained(teacher_dir)
    examples = load_split("chnsenticorp", SENTI, "dev")[:6]
    items = build_items([(e.text_a, e.text_b) for e in examples], [e.label for e in examples], teacher.tokenizer,
                        load_tokenizer(tokenizer_dir), max_len=40)
    layer_map = layer_map_preset("tinybert-12to3", 12, 3)
    hidden, attention = mapped_layers(layer_map)
    assert hidden == [0, 4, 8, 12] and attention == [3, 7, 11]
    cache = TeacherCache(12, hidden, attention, keep_features=True)
    model = teacher.model.eval()
    batch = collate_distill(items[:3], teacher.tokenizer.pad_id, 0)
    with torch.inference_mode():
        out = model(batch.teacher.input_ids, batch.teacher.token_type_ids, batch.teacher.attention_mask,
                    output_hidden_states=True, output_attention_scores=True)
    lengths = batch.teacher.attention_mask.sum(1).tolist()
    assert cache.lookup(batch.indices, lengths, batch.teacher.input_ids.shape[1], need_features=False) is None
    cache.store(batch.indices, lengths, TeacherTargets(out.logits, out.encoder))
    width = batch.teacher.input_ids.shape[1]
    hit = cache.lookup(batch.indices, lengths, width, need_features=True)
    assert torch.equal(hit.logits, out.logits)
    mask = batch.teacher.attention_mask.bool()
    for layer in hidden:
        assert torch.equal(hit.encoder.hidden_states[layer][mask], out.encoder.hidden_states[layer][mask])
    pair = mask[:, None, :, None] & mask[:, None, None, :]  # (B, 1, T, T)
    for layer in attention:
        expected = out.encoder.attention_scores[layer].masked_fill(~pair, 0.0)
        assert torch.equal(hit.encoder.attention_scores[layer], expected)
    assert cache.lookup([0, 1, 99], lengths, width, need_features=False) is None  # item 99 never seen


def test_teacher_cache_is_off_when_nothing_would_read_it():
    """With augmentation the features are not cached, so joint and intermediate steps run the teacher anyway;
    only a prediction stage reads cached logits."""
    teacher = ErnieConfig.from_preset("teacher-micro")
    layer_map = layer_map_preset("tinybert-12to3", teacher.num_layers, 3)

    def cache_for(stage: Stage, augment: int) -> TeacherCache | None:
        config = DistillConfig(teacher="t", task="reviews", out_dir="o", stage=stage, augment=augment)
        return teacher_cache(config, teacher, layer_map, [])

    assert cache_for(Stage.joint, 1) is None and cache_for(Stage.intermediate, 1) is None
    assert cache_for(Stage.both, 1) is not None and not cache_for(Stage.both, 1).keep_features
    assert cache_for(Stage.prediction, 1) is not None
    assert cache_for(Stage.joint, 0).keep_features
    labels_only = DistillConfig(teacher="t", task="reviews", out_dir="o", stage=Stage.prediction,
                                loss_weights=DistillLossWeights(soft=0.0, hard=1.0))
    assert teacher_cache(labels_only, teacher, layer_map, []) is None  # it would never be read


def test_config_validation_names_the_problem(teacher_dir, tokenizer_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown student preset"):
        micro_config(teacher_dir, tokenizer_dir, tmp_path, student_preset="student-huge")
    with pytest.raises(ValueError, match="steps-prediction"):
        micro_config(teacher_dir, tokenizer_dir, tmp_path, steps_prediction=0)
    with pytest.raises(ValueError, match="needs --data-dir"):
        micro_config(teacher_dir, tokenizer_dir, tmp_path, data_dir=None)
    with pytest.raises(ValueError, match="augment options"):
        micro_config(teacher_dir, tokenizer_dir, tmp_path, augment=1, augment_options={"p_typo": 0.1})
    with pytest.raises(ValueError, match="no gold labels"):
        micro_config(teacher_dir, tokenizer_dir, tmp_path, augment=1, loss_weights=DistillLossWeights(soft=0, hard=1))
    assert DistillConfig.from_dict({"teacher": "t", "task": "reviews", "out_dir": "o", "stage": "prediction",
                                    "loss_weights": {"hard": 0.5}}).loss_weights.hard == 0.5
    with pytest.raises(ValueError, match="unknown DistillConfig fields: stages"):
        DistillConfig.from_dict({"teacher": "t", "task": "reviews", "out_dir": "o", "stages": "both"})


def test_cli_runs_and_reports_a_bad_teacher_in_one_line(teacher_dir, tokenizer_dir, tmp_path):
    app = typer.Typer()
    app.command()(distill_command)
    common = ["--task", "chnsenticorp", "--data-dir", str(SENTI), "--device", "cpu", "--threads", "1"]
    result = CliRunner().invoke(cli_app, ["distill", "--teacher", str(tmp_path / "missing"), "--out",
                                          str(tmp_path / "bad"), *common])
    # a missing teacher folder is refused while the options are parsed: click's usage error (exit 2) names it
    assert result.exit_code == 2
    assert "--teacher" in result.output and "missing" in result.output and "Traceback" not in result.output
    (tmp_path / "empty").mkdir()  # a folder that is no checkpoint: the library's one-line error
    result = CliRunner().invoke(app, ["--teacher", str(tmp_path / "empty"), "--out", str(tmp_path / "bad"), *common])
    assert result.exit_code == 1
    assert "error:" in result.output and "empty" in result.output and "Traceback" not in result.output

    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["--teacher", str(teacher_dir), "--out", str(out), *common,
                                      "--student-preset", "student-micro", "--student-tokenizer", str(tokenizer_dir),
                                      "--stage", "prediction", "--steps-prediction", "2", "--limit", "16",
                                      "--batch-size", "8", "--max-len", "32", "--hard-weight", "0.5",
                                      "--temperature", "2"])
    assert result.exit_code == 0, result.output
    config = load_pretrained(out / "best").meta.extra["distill_config"]
    assert config["loss_weights"]["temperature"] == 2.0 and config["loss_weights"]["hard"] == 0.5
    assert config["stage"] == "prediction" and config["student_preset"] == "student-micro"
