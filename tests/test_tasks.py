"""Task registry, TSV parsing (every malformed case with its file:line), alignment, metrics."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ernie_tiny.tokenization.encoding import Encoding, TokenSpan
from ernie_tiny.heads import HeadKind
from ernie_tiny.tasks.metrics import bio_entities, entity_f1, mean_reciprocal_rank
from ernie_tiny.tasks.batches import collate
from ernie_tiny.heads import IGNORE_INDEX
from ernie_tiny.tasks import (SPLITS, TASKS, DataError, EncodedExample, EncodedSplit, Example, TaskKind,
                              align_tags_to_tokens, char_tags_from_tokens, encode_examples, evaluate, get_task,
                              load_split, predictions_from_outputs, read_task_file, reviews_splits)
from ernie_tiny.tokenization.char import CharTokenizer

DATA = Path(os.environ.get("ERNIE_TINY_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))



def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


# ---- registry --------------------------------------------------------------------------------------

def test_registry_has_the_ernie_tasks_with_their_heads_and_metrics():
    assert set(TASKS) == {"xnli", "lcqmc", "chnsenticorp", "nlpcc-dbqa", "msra-ner", "reviews"}
    assert get_task("xnli").labels == ("contradiction", "entailment", "neutral")
    assert get_task("nlpcc-dbqa").head is HeadKind.ranking and get_task("nlpcc-dbqa").main_metric == "mrr"
    assert get_task("msra-ner").head is HeadKind.token_classification and get_task("msra-ner").num_labels == 7
    assert get_task("lcqmc").kind is TaskKind.pair and get_task("reviews").embedded
    with pytest.raises(ValueError, match="unknown task 'sst2'; known tasks: xnli"):
        get_task("sst2")


# ---- parsing ---------------------------------------------------------------------------------------

def test_columns_are_found_by_header_name_not_position(tmp_path):
    path = write(tmp_path / "train.tsv", "text_a\tlabel\n很好\t1\n太差\tnegative\n")
    examples = read_task_file("chnsenticorp", path)
    assert [(e.text_a, e.label, e.line) for e in examples] == [("很好", 1, 2), ("太差", 0, 3)]
    assert examples[1].where == f"{path}:3"


def test_pair_ranking_and_label_aliases(tmp_path):
    xnli = read_task_file("xnli", write(tmp_path / "x.tsv", "text_a\ttext_b\tlabel\n甲\t乙\tcontradictory\n"
                                                            "丙\t丁\tneutral\n戊\t己\t1\n"))
    assert [(e.text_a, e.text_b, e.label) for e in xnli] == [("甲", "乙", 0), ("丙", "丁", 2), ("戊", "己", 1)]
    dbqa = read_task_file("nlpcc-dbqa", write(tmp_path / "d.tsv", "qid\ttext_a\ttext_b\tlabel\n"
                                                                  "7\t谁\t他\t1\n7\t谁\t它\t0\n"))
    assert [(e.qid, e.text_b, e.label) for e in dbqa] == [("7", "他", 1), ("7", "它", 0)]


def test_ner_rows_with_spaces_or_ernie_separator(tmp_path):
    spaced = read_task_file("msra-ner", write(tmp_path / "a.tsv", "text_a\tlabel\n张 三 去 北 京\tB-PER I-PER O B-LOC I-LOC\n"))
    ernie = read_task_file("msra-ner", write(tmp_path / "b.tsv", "text_a\tlabel\n张\x02三\x02去\tB-PER\x02I-PER\x02O\n"))
    tags = get_task("msra-ner").labels
    assert spaced[0].text_a == "张三去北京"
    assert [tags[t] for t in spaced[0].label] == ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]
    assert ernie[0].text_a == "张三去" and [tags[t] for t in ernie[0].label] == ["B-PER", "I-PER", "O"]


@pytest.mark.parametrize("task, content, problem", [
    ("chnsenticorp", "label\ttext_a\n1\t好\n0\t差\textra\n", ":3: expected 2 TAB-separated fields, got 3"),
    ("chnsenticorp", "label\ttext_a\n1\t好\n2\t差\n",
     ":3: unknown label '2' (expected one of negative, positive or 0..1)"),
    ("chnsenticorp", "label\ttext_a\n1\t好\n0\t  \n", ":3: empty text_a"),
    ("lcqmc", "text_a\ttext_b\tlabel\n一\t\t1\n", ":2: empty text_b"),
    ("nlpcc-dbqa", "qid\ttext_a\ttext_b\tlabel\n\t问\t答\t1\n", ":2: empty qid"),
    ("lcqmc", "text_a\tlabel\n一\t1\n",
     ":1: header lacks column 'text_b' (found text_a, label; task lcqmc needs text_a, text_b, label)"),
    ("msra-ner", "text_a\tlabel\n张 三 去\tB-PER I-PER\n", ":2: 3 characters but 2 tags"),
    ("msra-ner", "text_a\tlabel\n张 三\tB-PER I-XYZ\n",
     ":2: unknown tag 'I-XYZ' at item 2 (expected one of B-PER, I-PER, B-ORG, I-ORG, B-LOC, I-LOC, O)"),
    ("msra-ner", "text_a\tlabel\n张三 去\tB-PER O\n", ":2: item 1 '张三' is not one character"),
    ("chnsenticorp", b"label\ttext_a\n1\t\xe5\xa5\xbd\n0\t\xff\xfe\n",
     ":3: not valid UTF-8 (byte 2: invalid start byte); convert the file to UTF-8 first"),
    ("chnsenticorp", "label\ttext_a\n", ":2: no rows after the header"),
])
def test_malformed_rows_stop_with_file_line_and_problem(tmp_path, task, content, problem):
    path = write(tmp_path / "train.tsv", content)
    with pytest.raises(DataError) as info:
        read_task_file(task, path)
    assert str(info.value) == f"{path}{problem}"


def test_missing_file_and_missing_data_dir(tmp_path):
    with pytest.raises(DataError) as info:
        load_split("lcqmc", tmp_path, "dev")
    assert str(info.value) == f"{tmp_path / 'dev.tsv'}: no such file"
    with pytest.raises(DataError, match="task lcqmc reads its rows from files"):
        load_split("lcqmc", None, "train")
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        load_split("lcqmc", tmp_path, "valid")


def test_real_chnsenticorp_and_msra_files_parse_whole():
    if not (DATA / "chnsenticorp_htl" / "dev.tsv").is_file():
        pytest.skip(f"real task data not found at {DATA} (set ERNIE_TINY_DATA)")
    sizes = {split: len(load_split("chnsenticorp", DATA / "chnsenticorp_htl", split)) for split in SPLITS}
    assert sizes == {"train": 6212, "dev": 776, "test": 777}
    ner = load_split("msra-ner", DATA / "msra_ner", "dev")
    assert len(ner) == 5528 and all(len(e.label) == len(e.text_a) for e in ner)


# ---- embedded reviews ------------------------------------------------------------------------------

def test_reviews_are_deduplicated_disjoint_deterministic_and_export_round_trips(tmp_path):
    splits = reviews_splits()
    sizes = [len(splits[s]) for s in SPLITS]
    assert sum(sizes) > 17000 and sizes[0] == int(sum(sizes) * 0.8)
    texts = [{e.text_a for e in splits[s]} for s in SPLITS]
    assert sum(len(t) for t in texts) == sum(sizes)  # no duplicates inside or across splits
    assert {e.label for e in splits["train"]} == {0, 1}
    for split, examples in splits.items():  # the reviews as TSV files read back like any task's
        rows = ["label\ttext_a"] + [f"{e.label}\t{e.text_a}" for e in examples]
        (tmp_path / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    for split in SPLITS:
        from_files = load_split("reviews", tmp_path, split)
        embedded = load_split("reviews", None, split)
        assert [(e.text_a, e.label) for e in from_files] == [(e.text_a, e.label) for e in embedded]


# ---- encoding and alignment ------------------------------------------------------------------------

def subword_encoding(text: str, pieces: list[tuple[int, int]]) -> Encoding:
    """A subword-style encoding: [CLS] pieces [SEP], each piece a char span of ``text``."""
    spans = [TokenSpan(-1, 0, 0)] + [TokenSpan(0, s, e) for s, e in pieces] + [TokenSpan(-1, 1, 1)]
    tokens = ["[CLS]"] + [text[s:e] for s, e in pieces] + ["[SEP]"]
    return Encoding(tokens, list(range(len(tokens))), [0] * len(tokens), spans)


def test_ner_tags_align_to_the_first_char_of_each_subword_and_back():
    task = get_task("msra-ner")
    tag = {name: i for i, name in enumerate(task.labels)}
    text = "张三去北京市"
    char_tags = [tag[t] for t in ("B-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-LOC")]
    encoding = subword_encoding(text, [(0, 2), (2, 3), (3, 5), (5, 6)])  # 张三 | 去 | 北京 | 市
    labels = align_tags_to_tokens(encoding, char_tags)
    assert labels == [IGNORE_INDEX, tag["B-PER"], tag["O"], tag["B-LOC"], tag["I-LOC"], IGNORE_INDEX]
    # predicting exactly those token tags gives back every char's tag (multi-char pieces continue with I-)
    assert char_tags_from_tokens(task, encoding, [tag["O"] if x == IGNORE_INDEX else x for x in labels], 6) == char_tags


def test_char_tokenizer_alignment_is_one_to_one_and_truncation_is_counted():
    task = get_task("msra-ner")
    examples = [Example("张三去北京", None, [0, 1, 6, 4, 5]), Example("李四" * 20, None, [0, 1] * 20)]
    tokenizer = CharTokenizer.from_texts([e.text_a for e in examples])
    encoded = encode_examples(examples, tokenizer, max_len=16)
    assert encoded.truncated == 1
    assert encoded.items[0].label == [IGNORE_INDEX, 0, 1, 6, 4, 5, IGNORE_INDEX]
    assert len(encoded.items[1].label) == 16 and encoded.items[1].label[1:15] == [0, 1] * 7
    batch = collate(task, encoded.items, tokenizer.pad_id)
    assert batch.labels.shape == batch.input_ids.shape == (2, 16)
    assert batch.labels[0, 7:].tolist() == [IGNORE_INDEX] * 9 and batch.attention_mask[0].sum() == 7
    # a model output equal to one-hot gold tags predicts the gold chars; truncated chars become O
    outputs = [np.eye(7)[[6 if x == IGNORE_INDEX else x for x in item.label]] for item in encoded.items]
    predictions = predictions_from_outputs(task, outputs, encoded, examples)
    assert predictions[0] == [0, 1, 6, 4, 5] and predictions[1] == [0, 1] * 7 + [6] * 26


def test_ranking_batches_carry_query_groups():
    task = get_task("nlpcc-dbqa")
    examples = [Example("问", "答", 1, "q9"), Example("问", "错", 0, "q9"), Example("再问", "答", 1, "q3")]
    encoded = encode_examples(examples, CharTokenizer.from_texts(["问答错再"]), max_len=32)
    batch = collate(task, encoded.items, pad_id=0)
    assert batch.group_ids.tolist() == [0, 0, 1] and batch.labels.tolist() == [1, 0, 1]
    assert set(batch.model_inputs()) == {"input_ids", "token_type_ids", "attention_mask", "labels", "group_ids"}
    assert batch.token_type_ids[0].tolist() == [0, 0, 0, 1, 1, 0]  # padded to the longest row


# ---- metrics -----------------------------------------------------------------------------------------

def test_classification_metrics_by_hand():
    examples = [Example("a", None, y) for y in (0, 0, 1, 1)]
    metrics = evaluate("chnsenticorp", [0, 1, 1, 1], examples)
    # class 0: P 1, R 1/2 -> F1 2/3; class 1: P 2/3, R 1 -> F1 4/5
    assert metrics == pytest.approx({"accuracy": 0.75, "macro_f1": (2 / 3 + 4 / 5) / 2})


def test_mrr_counts_every_query_like_ernie():
    qids = ["a", "a", "b", "b", "b", "c"]
    gold = [0, 1, 1, 0, 0, 0]
    scores = [0.9, 0.5, 0.1, 0.3, 0.2, 0.7]
    # a: relevant answer ranked 2nd; b: 3rd; c: no relevant answer -> 0
    assert mean_reciprocal_rank(qids, gold, scores) == pytest.approx((1 / 2 + 1 / 3 + 0) / 3)
    metrics = evaluate("nlpcc-dbqa", [-1.0, 2.0, 0.5, -0.3, -2.0, 1.0],
                       [Example("q", "a", y, q) for q, y in zip(qids, gold)])
    # both relevant answers ranked 1st, query c still counts: MRR 2/3;
    # thresholded at 0: predicted relevant rows 1, 2, 5 -> TP 2, FP 1, FN 0
    assert metrics == pytest.approx({"mrr": 2 / 3, "f1": 0.8, "accuracy": 5 / 6})


def test_bio_entities_and_entity_f1_by_hand():
    assert bio_entities(["O", "I-LOC", "I-LOC", "B-PER", "I-ORG", "B-ORG", "I-ORG"]) == {
        ("LOC", 1, 3), ("PER", 3, 4), ("ORG", 4, 5), ("ORG", 5, 7)}
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "I-ORG"]]
    predicted = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "I-ORG", "O"]]
    # gold 3 entities, predicted 3, exactly right 1 (the PER)
    assert entity_f1(gold, predicted) == pytest.approx({"f1": 1 / 3, "precision": 1 / 3, "recall": 1 / 3})
    assert entity_f1([["O"]], [["O"]]) == {"f1": 0.0, "precision": 0.0, "recall": 0.0}


def test_evaluate_ner_uses_tag_ids_per_char():
    tag = {name: i for i, name in enumerate(get_task("msra-ner").labels)}
    gold = [tag[t] for t in ("B-PER", "I-PER", "O", "B-LOC", "I-LOC")]
    wrong_end = [tag[t] for t in ("B-PER", "I-PER", "O", "B-LOC", "O")]
    assert evaluate("msra-ner", [gold], [Example("张三去北京", None, gold)])["f1"] == 1.0
    assert evaluate("msra-ner", [wrong_end], [Example("张三去北京", None, gold)])["f1"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="1 predictions for 2 examples"):
        evaluate("msra-ner", [gold], [Example("张", None, [6])] * 2)


def test_collate_pads_each_batch_to_its_own_longest():
    task = get_task("chnsenticorp")
    tokenizer = CharTokenizer.from_texts(["好差一般"])
    encoded = encode_examples([Example("好", None, 1), Example("一般般", None, 0)], tokenizer, max_len=64)
    assert isinstance(encoded, EncodedSplit) and isinstance(encoded.items[0], EncodedExample)
    batch = collate(task, encoded.items, tokenizer.pad_id)
    assert batch.input_ids.shape == (2, 5) and batch.group_ids is None
    assert torch.equal(batch.labels, torch.tensor([1, 0]))


def test_limits_cut_train_and_evaluation_separately():
    from ernie_tiny.tasks import data_name, load_splits

    whole = load_splits("reviews", None)
    train_only = load_splits("reviews", None, train_limit=10)
    assert len(train_only["train"]) == 10
    assert len(train_only["dev"]) == len(whole["dev"]) and len(train_only["test"]) == len(whole["test"])
    both = load_splits("reviews", None, train_limit=10, eval_limit=5)
    assert [len(both[s]) for s in ("train", "dev", "test")] == [10, 5, 5]
    assert data_name("lcqmc", "data/bank") == "data/bank" and data_name("reviews", None) == "embedded reviews"


def test_the_evaluator_reuses_splits_encoded_before(monkeypatch):
    """finetune encodes dev/test once (prepare) and hands them to the evaluator, which must not encode again."""
    from ernie_tiny.tasks import evaluation
    from ernie_tiny.training.distributed import DistributedContext

    task = get_task("reviews")
    examples = {"dev": [Example("房间很干净", None, 1), Example("太吵了", None, 0)]}
    tokenizer = CharTokenizer.from_texts(["房间很干净", "太吵了"])
    encoded = {"dev": encode_examples(examples["dev"], tokenizer, max_len=16)}
    evaluator = evaluation.SplitEvaluator(task, examples, 16, 8, DistributedContext(0, 1, 0, torch.device("cpu")))
    evaluator.add_encoded(tokenizer, encoded)

    def refuse(*args, **kwargs):
        raise AssertionError("dev was encoded a second time")

    monkeypatch.setattr(evaluation, "encode_examples", refuse)
    assert evaluator.encoded(tokenizer, "dev") is encoded["dev"]
    with pytest.raises(AssertionError, match="second time"):
        evaluator.encoded(CharTokenizer.from_texts(["别的"]), "dev")  # another tokenizer is encoded anew
