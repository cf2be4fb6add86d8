"""NER (char student, token-level soft targets) and DBQA ranking (answer-side augmentation) distillation.

The token-level soft loss and the token-logit alignment are checked value by value on
hand-made tensors; NER augmentation never shifts a tag; both tasks distil end to end from
the CLI on micro presets and a few real rows (MSRA NER; a ranking set built from LCQMC).
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from ernie_tiny.augment.ner import NER_AUGMENT_DEFAULTS, apply_ner_plan, augment_ner_examples
from ernie_tiny.augment.strategies import AugmentConfig, augment_examples
from ernie_tiny.checkpoint import load_pretrained
from ernie_tiny.cli import app
from ernie_tiny.tasks.metrics import bio_entities
from ernie_tiny.tasks import MSRA_TAGS, load_split
from ernie_tiny.distill.align import align_token_logits, build_alignment, collate_alignments
from ernie_tiny.distill.config import CHAR_TOKENIZER, DistillConfig
from ernie_tiny.distill.data import NO_LABEL, build_items, collate_distill
from ernie_tiny.distill.teacher import TeacherCache, TeacherTargets
from ernie_tiny.distill.losses import DistillLossWeights, compute_prediction_loss, hard_label_ce, soft_cross_entropy
from ernie_tiny.finetune import FinetuneConfig, finetune
from ernie_tiny.model import HeadKind
from ernie_tiny.tokenization.char import CharTokenizer
from ernie_tiny.training.logging import read_metrics
from ernie_tiny.training.schedule import OptimConfig

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ERNIE_TINY_DATA", ROOT.parent / "shared" / "data"))
MSRA, LCQMC = DATA / "msra_ner", DATA / "lcqmc"
needs_data = pytest.mark.skipif(not ((MSRA / "train.tsv").is_file() and (LCQMC / "train.tsv").is_file()),
                                reason=f"real data not found at {DATA} (set ERNIE_TINY_DATA)")
O = MSRA_TAGS.index("O")


def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


# ---- token-level soft loss and token-logit alignment, by hand -----------------------------------------

def test_token_soft_cross_entropy_by_hand():
    student = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [5.0, -5.0]]])  # (1, 3, 2)
    teacher = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [-9.0, 9.0]]])
    valid = torch.tensor([[True, True, False]])  # the third token (padding, a special) must not count
    temperature = 2.0

    def row(z_s, z_t):  # - sum_c softmax(z_t / T)_c log softmax(z_s / T)_c, written out for two classes
        p = [math.exp(v / temperature) for v in z_t]
        p = [v / sum(p) for v in p]
        log_z = math.log(sum(math.exp(v / temperature) for v in z_s))
        return -sum(pc * (zs / temperature - log_z) for pc, zs in zip(p, z_s))

    rows = [row(student[0, i].tolist(), teacher[0, i].tolist()) for i in range(2)]
    assert rows[0] == pytest.approx(-math.log(math.exp(0.5) / (math.exp(0.5) + 1)) / 2 - math.log(1 / (1 + math.exp(0.5))) / 2)
    expected = temperature ** 2 * (rows[0] + rows[1]) / 2
    assert soft_cross_entropy(student, teacher, temperature, valid=valid).item() == pytest.approx(expected, rel=1e-6)
    # The masked token changes nothing, whatever its logits.
    other = student.clone()
    other[0, 2] = torch.tensor([-50.0, 50.0])
    assert soft_cross_entropy(other, teacher, temperature, valid=valid).item() == pytest.approx(expected, rel=1e-6)
    total, terms = compute_prediction_loss(student, teacher, torch.tensor([[1, 0, NO_LABEL]]),
                                           DistillLossWeights(soft=1.0, hard=0.5, temperature=temperature), valid)
    hard = (-torch.log_softmax(student[0, 0], -1)[1] - torch.log_softmax(student[0, 1], -1)[0]) / 2
    assert terms["hard_ce"].item() == pytest.approx(hard.item(), rel=1e-6)
    assert total.item() == pytest.approx(expected + 0.5 * hard.item(), rel=1e-6)


def test_align_token_logits_takes_each_student_tokens_first_teacher_token():
    teacher = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)  # (B, T, C)
    cover = torch.zeros(2, 3, 4)
    cover[0, 0, 0] = cover[0, 1, 1] = cover[0, 1, 2] = cover[0, 2, 3] = 1  # student token 1 spans teacher 1..2
    cover[1, 0, 0] = cover[1, 1, 2] = 1  # student token 2 invalid (all-zero row)
    out = align_token_logits(teacher, cover)
    assert out.shape == (2, 3, 3)
    assert torch.equal(out[0], teacher[0, [0, 1, 3]])
    assert torch.equal(out[1, :2], teacher[1, [0, 2]])
    eye = collate_alignments([build_alignment(e, e) for e in CharTokenizer.from_texts(["北京大学"]).encode_batch(
        [("北京大学", None)])])  # a char student: the identity
    logits = torch.randn(1, 6, 7)
    assert torch.equal(align_token_logits(logits, eye.cover), logits)


def test_ranking_hard_loss_skips_unlabelled_augmented_rows():
    scores = torch.tensor([2.0, -1.0, 0.5])
    labels = torch.tensor([1, NO_LABEL, 0])
    expected = (-math.log(1 / (1 + math.exp(-2.0))) - math.log(1 - 1 / (1 + math.exp(-0.5)))) / 2
    assert hard_label_ce(scores, labels).item() == pytest.approx(expected, rel=1e-6)
    assert hard_label_ce(scores, torch.full((3,), NO_LABEL)).item() == 0.0


# ---- augmentation: NER tags never shift, ranking keeps the query ------------------------------------

NER_ROWS = [  # (text, tags): entities next to, and between, replaceable O words
    ("我们在北京大学学习了很多知识", ["O"] * 3 + ["B-ORG", "I-ORG", "I-ORG", "I-ORG"] + ["O"] * 7),
    ("张三昨天去上海参加了会议", ["B-PER", "I-PER"] + ["O"] * 3 + ["B-LOC", "I-LOC"] + ["O"] * 5),
    ("今天的天气非常好", ["O"] * 8),
    ("经济发展速度很快", ["O"] * 8),
    ("我们的会议在明天举行", ["O"] * 10),
]


def entity_strings(text: str, tags) -> list[tuple[str, str]]:
    names = [MSRA_TAGS[t] if isinstance(t, int) else t for t in tags]
    return [(kind, text[start:end]) for kind, start, end in sorted(bio_entities(names), key=lambda e: e[1])]


def test_ner_augmentation_never_shifts_a_tag():
    rows = [(text, [MSRA_TAGS.index(t) for t in tags]) for text, tags in NER_ROWS]
    if (MSRA / "train.tsv").is_file():
        rows += [(e.text_a, e.label) for e in load_split("msra-ner", MSRA, "train")[:150]]
    out = augment_ner_examples(rows, AugmentConfig(num_aug=3, seed=4, **NER_AUGMENT_DEFAULTS), outside=O)
    assert len(out) > len(rows) // 2
    assert {e.source_index for e in out} >= {0, 1}  # the sentences with entities and O words were augmented
    for example in out:
        text, tags = rows[example.source_index]
        assert len(example.text_a) == len(example.tags) and example.text_a != text
        # The same entities, same types, same chars, in the same order: only offsets may move.
        assert entity_strings(example.text_a, example.tags) == entity_strings(text, tags)
        assert sum(t != O for t in example.tags) == sum(t != O for t in tags)
    assert out == augment_ner_examples(rows, AugmentConfig(num_aug=3, seed=4, **NER_AUGMENT_DEFAULTS), outside=O)


def test_ner_plan_regenerates_tags_word_by_word():
    words = [("张三", "nr"), ("去", "v"), ("上海", "ns"), ("开会", "v")]
    tags = [0, 1, O, 4, 5, O, O]
    text, new_tags = apply_ner_plan(words, tags, {1: "飞往", 3: "旅游观光"}, O)
    assert text == "张三飞往上海旅游观光"
    assert list(new_tags) == [0, 1, O, O, 4, 5, O, O, O, O]


def test_ner_augmentation_refuses_strategies_that_move_boundaries():
    with pytest.raises(ValueError, match="p_ngram must be 0"):
        augment_ner_examples([("今天", [O, O])], AugmentConfig(num_aug=1, p_unk=0.0, p_ngram=0.5), outside=O)
    with pytest.raises(ValueError, match="p_unk"):
        DistillConfig(teacher="t", task="msra-ner", data_dir="d", out_dir="o", augment=1,
                      augment_options={"p_unk": 0.1})


def test_ranking_augmentation_changes_the_answer_only():
    pairs = [("怎么学习英语", "学习英语的方法有哪些"), ("今天天气怎么样", "明天会下雨吗"), ("手机坏了怎么办", "手机修理要多少钱")]
    config = DistillConfig(teacher="t", task="nlpcc-dbqa", data_dir="d", out_dir="o", augment=3).augment_config()
    assert config.augment_text_a is False
    out = augment_examples(pairs, config)
    assert out and all(e.text_a == pairs[e.source_index][0] for e in out)
    assert all(e.text_b != pairs[e.source_index][1] for e in out)


def test_ner_student_reads_chars_by_default():
    config = DistillConfig(teacher="t", task="msra-ner", data_dir="d", out_dir="o")
    assert config.student_tokenizer == CHAR_TOKENIZER
    assert DistillConfig(teacher="t", task="msra-ner", data_dir="d", out_dir="o", student_init="x").student_tokenizer \
        is None


def test_token_logits_round_trip_through_the_teacher_cache():
    tokenizer = CharTokenizer.from_texts([t for t, _ in NER_ROWS])
    rows = NER_ROWS[:3]
    items = build_items([(t, None) for t, _ in rows], [[MSRA_TAGS.index(x) for x in tags] for _, tags in rows],
                        tokenizer, None, max_len=12)
    batch = collate_distill(items, tokenizer.pad_id, tokenizer.pad_id)
    assert batch.labels.shape == batch.student.input_ids.shape  # (B, S): a tag per student token
    assert batch.labels[0, 0] == NO_LABEL and batch.labels[0, 4] == MSRA_TAGS.index("B-ORG")  # [CLS], then chars
    logits = torch.randn(*batch.teacher.input_ids.shape, 7)
    lengths = batch.teacher.attention_mask.sum(1).tolist()
    cache = TeacherCache(12, [], [], keep_features=False)
    cache.store(batch.indices, lengths, TeacherTargets(logits, None))
    hit = cache.lookup(batch.indices, lengths, batch.teacher.input_ids.shape[1], need_features=False)
    mask = batch.teacher.attention_mask.bool()
    assert torch.equal(hit.logits[mask], logits[mask]) and not hit.logits[~mask].any()
    wider = cache.lookup(batch.indices[1:], lengths[1:], 20, need_features=False)  # another batch's width
    assert wider.logits.shape == (2, 20, 7) and torch.equal(wider.logits[0, :lengths[1]], logits[1, :lengths[1]])


# ---- end to end from the CLI on micro presets --------------------------------------------------------

def write_ranking_set(directory: Path, pairs: int = 24) -> Path:
    """A tiny ranking set from LCQMC rows as benchmarks/lcqmc_ranking.py builds it: qid per text_a."""
    spec = importlib.util.spec_from_file_location("lcqmc_ranking", ROOT / "benchmarks" / "lcqmc_ranking.py")
    builder = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = builder  # its dataclass looks its module up while it is being defined
    spec.loader.exec_module(builder)
    for split in ("train", "dev", "test"):
        rows = builder.build_ranking_rows(load_split("lcqmc", LCQMC, split), max_queries=pairs, negatives=2, seed=1)
        builder.write_ranking_tsv(rows, directory / f"{split}.tsv")
    return directory


def micro_teacher(task: str, data_dir: Path, out: Path) -> Path:
    config = FinetuneConfig(task=task, out_dir=str(out), preset="teacher-micro", data_dir=str(data_dir), max_len=40,
                            limit=48, max_steps=4, optim=OptimConfig(lr=1e-3, batch_size=16, eval_every=4,
                                                                     save_every=4, seed=3))
    finetune(config, quiet())
    return out / "best"


def run_cli(args: list[str]):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


COMMON = ["--student-preset", "student-micro", "--steps-prediction", "4", "--batch-size", "8", "--eval-every", "2",
          "--log-every", "1", "--max-len", "40", "--limit", "24", "--lr", "1e-3", "--device", "cpu"]


@needs_data
def test_ner_distils_end_to_end_from_the_cli(tmp_path):
    teacher = micro_teacher("msra-ner", MSRA, tmp_path / "teacher")
    out = tmp_path / "student"
    run_cli(["distill", "--teacher", str(teacher), "--task", "msra-ner", "--data-dir", str(MSRA), "--out", str(out),
             "--augment", "1", "--hard-weight", "0.5", *COMMON])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["main_metric"] == "f1" and set(metrics["student"]["test"]) == {"f1", "precision", "recall"}
    assert metrics["examples"]["augmented"] > 0
    assert metrics["mean_train_tokens"]["teacher"] == metrics["mean_train_tokens"]["student"]  # one token per char
    train = [r for r in read_metrics(out / "metrics.jsonl") if r["split"] == "train"]
    assert len(train) == 4 and all(r["loss_soft_ce"] > 0 and r["loss_hard_ce"] > 0 and r["loss_hidden_l1"] > 0
                                   for r in train)
    best = load_pretrained(out / "best")
    assert best.meta.head is HeadKind.token_classification and best.tokenizer.kind == "char"
    assert best.tokenizer.vocab == load_pretrained(teacher).tokenizer.vocab


@needs_data
def test_ner_refuses_a_subword_student(tmp_path):
    from ernie_tiny.tokenization.subword import train_subword_tokenizer

    teacher = micro_teacher("msra-ner", MSRA, tmp_path / "teacher")
    tokenizer = tmp_path / "tok"
    train_subword_tokenizer([e.text_a for e in load_split("msra-ner", MSRA, "train")[:200]], tokenizer, vocab_size=800)
    result = CliRunner().invoke(app, ["distill", "--teacher", str(teacher), "--task", "msra-ner", "--data-dir",
                                        str(MSRA), "--out", str(tmp_path / "s"), "--student-tokenizer", str(tokenizer),
                                        *COMMON])
    assert result.exit_code != 0 and "char student" in result.output and "Traceback" not in result.output


@needs_data
def test_dbqa_distils_with_augmentation_from_the_cli(tmp_path):
    data = write_ranking_set(tmp_path / "dbqa")
    teacher = micro_teacher("nlpcc-dbqa", data, tmp_path / "teacher")
    out = tmp_path / "student"
    run_cli(["distill", "--teacher", str(teacher), "--task", "nlpcc-dbqa", "--data-dir", str(data), "--out", str(out),
             "--augment", "2", "--student-tokenizer", CHAR_TOKENIZER, "--hard-weight", "0.5", *COMMON])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["main_metric"] == "mrr" and {"mrr", "f1"} <= set(metrics["student"]["test"])
    assert {"mrr", "f1"} <= set(metrics["teacher"]["dev"])
    assert metrics["examples"]["augmented"] > 0
    assert metrics["retention_pct"]["test"] == pytest.approx(
        100 * metrics["student"]["test"]["mrr"] / metrics["teacher"]["test"]["mrr"])
    dev = [r for r in read_metrics(out / "metrics.jsonl") if r["split"] == "dev"]
    assert dev and all("mrr" in r and "f1" in r for r in dev)


# ---- bench: the Average column covers NER F1 and DBQA MRR --------------------------------------------

def test_bench_averages_ner_f1_and_dbqa_mrr(tmp_path):
    from ernie_tiny.bench.benchmark import BenchConfig, run_benchmark
    from ernie_tiny.bench.report import markdown_table
    from ernie_tiny.checkpoint import save_pretrained
    from ernie_tiny.tasks import get_task
    from ernie_tiny.model import ErnieConfig, build_model

    ner_dir, dbqa_dir = tmp_path / "msra_ner", tmp_path / "dbqa"
    ner_dir.mkdir(), dbqa_dir.mkdir()
    (ner_dir / "dev.tsv").write_text("text_a\tlabel\n" + "".join(f"{' '.join(t)}\t{' '.join(g)}\n" for t, g in NER_ROWS),
                                     encoding="utf-8")
    answers = [("q1", "怎么开通花呗", "花呗如何开通", 1), ("q1", "怎么开通花呗", "花呗怎么还款", 0),
               ("q2", "如何学好英语", "英语怎么学", 1), ("q2", "如何学好英语", "数学怎么学", 0),
               ("q2", "如何学好英语", "英语考试时间", 0)]
    (dbqa_dir / "dev.tsv").write_text("qid\ttext_a\ttext_b\tlabel\n" + "".join("\t".join(map(str, r)) + "\n"
                                                                              for r in answers), encoding="utf-8")
    tokenizer = CharTokenizer.from_texts([t for t, _ in NER_ROWS] + [r[1] + r[2] for r in answers])
    paths = {}
    for role, preset in (("teacher", "teacher-micro"), ("student", "student-micro")):
        for task, head, outputs in (("msra-ner", "token_classification", 7), ("nlpcc-dbqa", "ranking", 2)):
            torch.manual_seed(1 if role == "teacher" else 2)
            model = build_model(ErnieConfig.from_preset(preset, vocab_size=tokenizer.vocab_size), head, outputs)
            paths[role, task] = save_pretrained(model, tmp_path / role / task, tokenizer=tokenizer, task=task,
                                                labels=list(get_task(task).labels))
    tasks = ("msra-ner", "nlpcc-dbqa")
    config = BenchConfig(tasks=tasks, data_dirs=(ner_dir, dbqa_dir), teachers=tuple(paths["teacher", t] for t in tasks),
                         students=tuple(paths["student", t] for t in tasks), runs=1, batch_size=2, warmup_batches=0,
                         threads=1, show_progress=False)
    result = run_benchmark(config, log=lambda line: None)
    # A char student reads the teacher's own sequences: no separate "char-length input" row.
    assert [(v.role, v.input_kind) for v in result.variants] == [("teacher", "own"), ("student", "own")]
    table = markdown_table(result)
    for variant in result.variants:
        f1, mrr = variant.metrics["msra-ner"]["f1"], variant.metrics["nlpcc-dbqa"]["mrr"]
        assert 0.25 <= mrr <= 1.0  # two queries: each 1, 1/2 or 1/3
        assert f"| {50 * (f1 + mrr):.2f} |" in table
        assert f"{100 * mrr:.1f}/{100 * variant.metrics['nlpcc-dbqa']['f1']:.1f}" in table
