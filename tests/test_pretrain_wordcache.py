"""The word cache: masks equal to segmenting at every example, invalidation, atomic reuse; the fast char ids."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ernie_tiny.pretrain import wordcache
from ernie_tiny.pretrain.batches import PretrainDataConfig, PretrainingData
from ernie_tiny.pretrain.corpus import Document, DocumentLayout, open_corpus
from ernie_tiny.pretrain.embedded import EmbeddedCorpus
from ernie_tiny.pretrain.example_ids import ExampleEncoder
from ernie_tiny.pretrain.masking import MaskingConfig
from ernie_tiny.pretrain.units import tag_class
from ernie_tiny.pretrain.wordcache import CachedWords, LiveWords, corpus_words
from ernie_tiny.tokenization.char import CharTokenizer
from ernie_tiny.tokenization.wordseg import pos_words

ARTICLES = [
    "新华社北京电。国务院总理李鹏今天在人民大会堂会见了日本客人。双方就经济合作交换了意见",
    "上海市政府宣布扩大开放！浦东新区的外资企业超过五千家。市长表示将继续改善投资环境。",
    "这家酒店的服务很好，房间干净。早餐种类很多，下次还会再来。",
    "手机电池不耐用，一天要充两次电。客服态度也不好，不推荐购买。Battery 2.5 hours?",
    "江泽民主席在北京会见了美国客人。中央人民广播电台报道了会见。",
]
GOLD = Document(("江泽民在北京。", "一年过去了。"),
                ((("江", "nr"), ("泽民", "nr"), ("在", "p"), ("北京", "ns"), ("。", "w")),
                 (("一", "m"), ("年", "q"), ("过去", "v"), ("了", "u"), ("。", "w"))))
MIXES = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.2, 0.4, 0.4)]


@pytest.fixture(scope="module")
def tokenizer():
    return CharTokenizer.from_texts(ARTICLES + list(GOLD.sentences))


def file_corpus(tmp_path, layout=DocumentLayout.line):
    path = tmp_path / "corpus.txt"
    separator = "\n" if layout is DocumentLayout.line else "\n\n"
    path.write_text(separator.join(ARTICLES * 3) + "\n", encoding="utf-8")
    return open_corpus([path], layout=layout)


def counting_pos_words(monkeypatch) -> list[str]:
    """Record every sentence the cache builder segments."""
    seen: list[str] = []

    def counted(text, hmm=True):
        seen.append(text)
        return pos_words(text, hmm)

    monkeypatch.setattr(wordcache, "pos_words", counted)
    return seen


@pytest.mark.parametrize("layout", list(DocumentLayout))
@pytest.mark.parametrize("mix", MIXES)
def test_masks_are_identical_with_and_without_the_cache(tmp_path, tokenizer, layout, mix):
    corpus = file_corpus(tmp_path, layout)
    words = corpus_words(corpus, cache_dir=tmp_path / "cache")
    for sentence_distance in (False, True):
        config = PretrainDataConfig(max_len=40, batch_size=4, seed=3, sentence_distance=sentence_distance,
                                    masking=MaskingConfig(basic=mix[0], phrase=mix[1], entity=mix[2]))
        live = PretrainingData(corpus, tokenizer, config)  # jieba at every example
        cached = PretrainingData(corpus, tokenizer, config, words)
        assert isinstance(live.words, LiveWords)
        assert [live.example(k) for k in range(60)] == [cached.example(k) for k in range(60)]


def test_gold_words_are_kept_and_untagged_documents_cached(tmp_path, tokenizer, monkeypatch):
    corpus = EmbeddedCorpus([GOLD, Document(("房间很干净。", "北京的酒店")), Document(("房间很干净。",))])
    seen = counting_pos_words(monkeypatch)
    words = corpus_words(corpus, cache_dir=tmp_path)
    assert seen == ["房间很干净。", "北京的酒店"]  # each distinct untagged sentence once, gold ones never
    assert list(words.document_starts) == [0, 2, 4, 5]
    for document, offsets in ((0, [0, 7]), (1, [3, 10])):  # gold words and jieba's, placed in one text
        got = words.text_words(document, corpus[document], 0, 2, offsets)
        expected = LiveWords().text_words(document, corpus[document], 0, 2, offsets)
        for name in ("starts", "ends", "classes"):
            assert np.array_equal(getattr(got, name), getattr(expected, name))
    gold = words.text_words(0, corpus[0], 1, 2, [0])
    assert gold.ends.tolist() == [1, 2, 4, 5, 6] and gold.classes.tolist() == [tag_class(t) for t in "m q v u w".split()]
    config = PretrainDataConfig(max_len=24, batch_size=4, seed=0, masking=MaskingConfig(basic=0, phrase=0, entity=1))
    examples = [PretrainingData(corpus, tokenizer, config, words).example(k) for k in range(30)]
    assert examples == [PretrainingData(corpus, tokenizer, config).example(k) for k in range(30)]
    with pytest.raises(ValueError, match="does not belong to this corpus"):
        words.text_words(2, corpus[1], 0, 1, [0])


def test_the_cache_is_reused_and_invalidated_by_corpus_bytes_and_segmenter(tmp_path, monkeypatch):
    corpus = file_corpus(tmp_path)
    seen = counting_pos_words(monkeypatch)
    progress: list[tuple[int, int]] = []
    first = corpus_words(corpus, cache_dir=tmp_path / "cache", progress=lambda done, total: progress.append((done,
                                                                                                           total)))
    distinct = len({s for d in range(len(corpus)) for s in corpus[d].sentences})
    assert len(seen) == distinct and progress[0] == (0, distinct) and progress[-1] == (distinct, distinct)
    again = corpus_words(corpus, cache_dir=tmp_path / "cache")
    assert len(seen) == distinct  # read back, nothing segmented
    assert np.array_equal(first.word_ends, again.word_ends) and first.tags == again.tags
    assert len(list((tmp_path / "cache").glob("words-*.npz"))) == 1

    corpus_words(corpus, hmm=False, cache_dir=tmp_path / "cache")  # another HMM flag: another cache
    assert len(seen) == 2 * distinct
    monkeypatch.setattr(wordcache, "jieba_version", lambda: "0.0-other")  # another segmenter version
    corpus_words(corpus, cache_dir=tmp_path / "cache")
    assert len(seen) == 3 * distinct
    monkeypatch.setattr(wordcache, "CACHE_FORMAT", wordcache.CACHE_FORMAT + 1)
    corpus_words(corpus, cache_dir=tmp_path / "cache")
    assert len(seen) == 4 * distinct

    path = tmp_path / "corpus.txt"
    path.write_text(path.read_text(encoding="utf-8") + "新的一篇文章。\n", encoding="utf-8")  # other bytes
    corpus_words(open_corpus([path]), cache_dir=tmp_path / "cache")
    assert len(seen) == 5 * distinct + 1
    assert len(list((tmp_path / "cache").glob("words-*.npz"))) == 5
    assert not list((tmp_path / "cache").glob(".*.tmp"))  # written atomically: no temporary left behind


def test_a_damaged_or_foreign_cache_file_is_rebuilt(tmp_path, monkeypatch):
    corpus = file_corpus(tmp_path)
    seen = counting_pos_words(monkeypatch)
    corpus_words(corpus, cache_dir=tmp_path / "cache")
    count = len(seen)
    (cache_file,) = (tmp_path / "cache").glob("words-*.npz")
    cache_file.write_bytes(cache_file.read_bytes()[:100])  # cut short
    rebuilt = corpus_words(corpus, cache_dir=tmp_path / "cache")
    assert len(seen) == 2 * count and isinstance(rebuilt, CachedWords)
    other = EmbeddedCorpus([Document(("完全不同的文本。",))])
    corpus_words(other, cache_dir=tmp_path / "other")
    (other_file,) = (tmp_path / "other").glob("words-*.npz")
    other_file.replace(cache_file)  # a file under the right name but another key inside
    corpus_words(corpus, cache_dir=tmp_path / "cache")
    assert len(seen) == 3 * count + 1


def test_parallel_segmentation_equals_one_process(tmp_path):
    corpus = file_corpus(tmp_path)
    monkey_chunk = wordcache.CHUNK_SENTENCES
    try:
        wordcache.CHUNK_SENTENCES = 3  # several chunks, so two workers share them
        parallel = wordcache.segment_corpus(corpus, workers=2)
    finally:
        wordcache.CHUNK_SENTENCES = monkey_chunk
    single = wordcache.segment_corpus(corpus, workers=1)
    assert parallel.tags == single.tags
    for name in ("word_ends", "word_tags", "sentence_starts", "document_starts"):
        assert np.array_equal(getattr(parallel, name), getattr(single, name))


# ---- the char tokenizer's ids, memoised ---------------------------------------------------------

def assert_same_as_encode(tokenizer, encoder, text_a, text_b, max_len):
    expected = tokenizer.encode(text_a, text_b, max_len=max_len)
    got = encoder.encode(text_a, text_b, max_len)
    assert got.input_ids.tolist() == expected.input_ids
    assert got.token_type_ids.tolist() == expected.token_type_ids
    for text_index, tokens in enumerate(got.text_tokens):
        positions = [i for i, span in enumerate(expected.spans) if span.text_index == text_index]
        assert tokens.positions.tolist() == positions
        assert tokens.starts.tolist() == [expected.spans[i].start for i in positions]


TRICKY = "江泽民北京ＡＢＣ１９９８年Ünïcödé ΑΣ İ\u3000\t\x1c\x00\ufffd\u2028豈\uf900é，。！？!?  abc123 ##x 𠀀"


@settings(max_examples=300, deadline=None)
@given(text_a=st.text(st.sampled_from(TRICKY) | st.characters(blacklist_categories=("Cs",)), max_size=50),
       text_b=st.none() | st.text(st.sampled_from(TRICKY), max_size=30), max_len=st.integers(3, 60))
def test_example_ids_equal_the_tokenizers_encode(tokenizer, text_a, text_b, max_len):
    assert_same_as_encode(tokenizer, ExampleEncoder(tokenizer), text_a, text_b, max_len)


def test_example_ids_equal_encode_on_the_embedded_corpus():
    corpus = EmbeddedCorpus.load()
    texts = list(corpus.iter_texts())
    tokenizer = CharTokenizer.from_texts(texts[::10], min_freq=3)  # rare chars become [UNK]: tested too
    encoder = ExampleEncoder(tokenizer)  # one memo across the texts, as in a data worker
    for text in texts[::97]:  # ~1,200 sentences of news and reviews (every one: benchmarks/masking_speed.py)
        assert_same_as_encode(tokenizer, encoder, text, None, 128)
    for a, b in zip(texts[::997], texts[500::997]):
        assert_same_as_encode(tokenizer, encoder, a, b, 64)


def test_pretraining_with_and_without_the_word_cache_trains_the_same_weights(tmp_path):
    import io

    import torch
    from rich.console import Console

    from ernie_tiny.pretrain.trainer import PretrainConfig, pretrain
    from ernie_tiny.training.schedule import OptimConfig

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(ARTICLES * 4) + "\n", encoding="utf-8")
    runs, progress = {}, []
    for word_cache in (True, False):
        out = tmp_path / f"cache-{word_cache}"
        config = PretrainConfig(out_dir=str(out), preset="teacher-micro", corpus=[str(corpus)], max_len=40,
                                max_steps=3, eval_examples=8, eval_batch_size=8, data_workers=0, vocab_min_freq=1,
                                word_cache=word_cache, word_cache_dir=str(tmp_path / "words"),
                                optim=OptimConfig(lr=1e-3, batch_size=8, eval_every=3, save_every=3, log_every=1,
                                                  seed=5))
        runs[word_cache] = pretrain(config, Console(file=io.StringIO()),
                                    progress=lambda done, total: progress.append((done, total)))
        assert list((tmp_path / "words").glob("words-*.npz"))  # the cache run wrote it; the other left it alone
    assert progress and progress[-1][0] == progress[-1][1]  # only the cached run reports (segmenting)
    assert runs[True].dev == runs[False].dev
    weights = [torch.load(tmp_path / f"cache-{c}" / "last.pt", weights_only=True)["model"] for c in (True, False)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_word_added_with_only_a_frequency_changes_the_key_and_rebuilds_the_cache(tmp_path, monkeypatch):
    from posseg_state import private_posseg_tokenizer

    tokenizer = private_posseg_tokenizer(monkeypatch)
    sentence = "酒店服务很到位。"
    corpus = EmbeddedCorpus([Document((sentence,))])

    def word_ends() -> list[int]:
        return np.cumsum([len(word) for word, _ in pos_words(sentence)]).tolist()

    key = wordcache.segmenter_key(True)
    first = corpus_words(corpus, cache_dir=tmp_path)
    assert first.word_ends.tolist() == word_ends()
    tokenizer.add_word("服务很到位", 100000)  # no tag: jieba's cuts change, its tag table does not
    assert wordcache.segmenter_key(True) != key
    again = corpus_words(corpus, cache_dir=tmp_path)  # segmented anew, not the stale cache
    assert len(list(tmp_path.glob("words-*.npz"))) == 2
    assert again.word_ends.tolist() == word_ends() != first.word_ends.tolist()
