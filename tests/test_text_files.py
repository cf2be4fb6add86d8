"""The one reader of UTF-8 text input (ernie_tiny.text_files): line numbers, blank lines, errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ernie_tiny.text_files import Blank, TextFileError, read_lines, read_tsv

# a line's text: any chars but the line end itself (a lone "\r" inside a line stays in it)
line_text = st.text(st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), max_size=20)


@settings(max_examples=60, deadline=None)
@given(st.lists(line_text, max_size=8), st.booleans(), st.booleans(), st.booleans())
def test_lines_round_trip_with_crlf_bom_and_a_final_newline(tmp_path_factory, texts, crlf, bom, final_newline):
    texts = [t.removesuffix("\r") for t in texts]  # a trailing "\r" is the CRLF's, by the rule
    if texts and bom:
        texts[0] = texts[0].removeprefix("\ufeff")
    end = "\r\n" if crlf else "\n"
    # an empty last line exists only with its newline ("a\n" is one line): then the newline is written
    ends_with_newline = final_newline or (texts and texts[-1] == "")
    body = "".join(t + end for t in texts) if ends_with_newline else end.join(texts)
    path = tmp_path_factory.mktemp("lines") / "input.txt"
    path.write_bytes((("\ufeff" if bom and texts else "") + body).encode("utf-8"))
    lines = read_lines(path)
    assert [line.text for line in lines] == texts
    assert [line.number for line in lines] == list(range(1, len(texts) + 1))  # item i is line i + 1


def test_blank_lines_kept_or_skipped_and_stripped(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("  一  \n\n \t \n二\n", encoding="utf-8")
    assert [(x.number, x.text) for x in read_lines(path)] == [(1, "  一  "), (2, ""), (3, " \t "), (4, "二")]
    assert [(x.number, x.text) for x in read_lines(path, strip=True, blank=Blank.skip)] == [(1, "一"), (4, "二")]


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes("好\n坏".encode("utf-8") + b"\xff\n"), r"input.txt:2: not valid UTF-8 \(byte 3"),
    (lambda p: p.mkdir(), "input.txt: is a directory, not a text file"),
    (lambda p: None, "input.txt: no such corpus file"),
])
def test_each_bad_file_is_one_line_naming_it(tmp_path, make, message):
    path = tmp_path / "input.txt"
    make(path)
    with pytest.raises(TextFileError, match=message) as caught:
        read_lines(path, what="corpus file")
    assert "\n" not in str(caught.value)


def test_tsv_header_and_numbered_rows(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_bytes("\ufefflabel\ttext_a\r\n1\t好\r\n0\t\r\n".encode("utf-8"))
    assert read_tsv(path) == (["label", "text_a"], [(2, ["1", "好"]), (3, ["0", ""])])
    path.write_bytes(b"")
    with pytest.raises(TextFileError, match="dev.tsv:1: empty file, expected a header line"):
        read_tsv(path)
