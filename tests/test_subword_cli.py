"""``ernie-tiny segment train|encode|stats`` through typer's CliRunner."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ernie_tiny.commands.segment import segment_app
from ernie_tiny.data.embedded_text import embedded_corpus_texts
from ernie_tiny.tokenization.subword import SubwordTokenizer

runner = CliRunner()
SAMPLE = embedded_corpus_texts()[::40]


@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    (root / "news.txt").write_text("\n".join(SAMPLE[:700]) + "\n\n", encoding="utf-8")
    (root / "pairs.tsv").write_text("text_a\ttext_b\tlabel\n" + "".join(
        f"{a}\t{b}\t{i % 2}\n" for i, (a, b) in enumerate(zip(SAMPLE[700:1000], SAMPLE[1000:1300]))), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def trained_dir(corpus_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "tok"
    result = runner.invoke(segment_app, ["train", "--corpus", str(corpus_files / "news.txt"),
                                         "--corpus", str(corpus_files / "pairs.tsv"), "--vocab-size", "3000",
                                         "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_train_writes_a_complete_tokenizer_folder(trained_dir, corpus_files):
    assert sorted(p.name for p in trained_dir.iterdir()) == ["spm.model", "tokenizer_config.json", "vocab.txt"]
    config = json.loads((trained_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["kind"] == "subword" and config["training"]["model_type"] == "unigram"
    described = " ".join(config["training"]["corpus"])
    assert "news.txt (700 texts" in described and "pairs.tsv (600 texts" in described
    assert SubwordTokenizer.from_directory(trained_dir).vocab_size == 3000


def test_train_errors_are_one_line_and_exit_1(tmp_path, corpus_files):
    result = runner.invoke(segment_app, ["train", "--corpus", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "t")])
    assert result.exit_code == 1 and "nope.txt: no such corpus file" in result.output
    assert "Traceback" not in result.output
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.md").write_text("keep me", encoding="utf-8")
    result = runner.invoke(segment_app, ["train", "--corpus", str(corpus_files / "news.txt"),
                                         "--out", str(tmp_path / "precious")])
    assert result.exit_code == 1 and "is not a tokenizer folder" in result.output
    assert (tmp_path / "precious" / "notes.md").read_text(encoding="utf-8") == "keep me"
    bad = tmp_path / "bad.txt"
    bad.write_bytes("好的\n".encode() + b"\xff\xfe\n")
    result = runner.invoke(segment_app, ["train", "--corpus", str(bad), "--out", str(tmp_path / "t")])
    assert result.exit_code == 1 and "bad.txt:2: not valid UTF-8" in result.output


def test_encode_text_and_file(trained_dir, tmp_path):
    tok = SubwordTokenizer.from_directory(trained_dir)
    result = runner.invoke(segment_app, ["encode", "--tokenizer", str(trained_dir), "--text", "酒店很干净",
                                         "--text-b", "房间不错"])
    assert result.exit_code == 0, result.output
    enc = tok.encode("酒店很干净", "房间不错", max_len=512)
    assert result.output.splitlines() == ["pieces: " + " ".join(enc.tokens), "ids:    " + " ".join(map(str, enc.input_ids))]

    lines = tmp_path / "in.txt"
    lines.write_text("酒店很干净\n这是什么\t那是什么\n\n", encoding="utf-8")
    result = runner.invoke(segment_app, ["encode", "--tokenizer", str(trained_dir), "--file", str(lines)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3]
    assert rows[1]["ids"] == tok.encode("这是什么", "那是什么", max_len=512).input_ids
    assert rows[0]["spans"][0] == [-1, 0, 0] and rows[2]["tokens"] == ["[CLS]", "[SEP]"]

    result = runner.invoke(segment_app, ["encode", "--tokenizer", str(trained_dir)])
    assert result.exit_code == 1 and "exactly one of --text or --file" in result.output
    result = runner.invoke(segment_app, ["encode", "--tokenizer", str(tmp_path / "none"), "--text", "x"])
    # one clear line either way: the CLI's own path check (exit 2) or the tokenizer loader's (exit 1)
    assert result.exit_code in (1, 2) and ("does not exist" in result.output or
                                           "no such tokenizer folder" in result.output), result.output


def test_stats_table_and_json(trained_dir, tmp_path):
    data = tmp_path / "pairs"
    data.mkdir()
    (data / "dev.tsv").write_text("text_a\ttext_b\tlabel\n酒店很干净，房间不错\t早餐一般\t1\n这是什么？\t那是什么？\t0\n",
                                  encoding="utf-8")
    out = tmp_path / "stats.json"
    result = runner.invoke(segment_app, ["stats", "--tokenizer", str(trained_dir), "--task", "lcqmc",
                                         "--data-dir", str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    stats = json.loads(out.read_text(encoding="utf-8"))
    assert stats["n_examples"] == 2 and stats["n_texts"] == 4
    char, subword = stats["char"], stats["subword"]
    assert char["text_tokens"] == len("酒店很干净，房间不错早餐一般这是什么？那是什么？")  # one token per char here
    assert subword["total_tokens"] == subword["text_tokens"] + 6
    assert stats["reduction_text_pct"] == pytest.approx(100 * (1 - subword["text_tokens"] / char["text_tokens"]),
                                                        abs=0.01)
    assert "reduction:" in result.output and "vocabulary trained on:" in result.output

    (data / "dev.tsv").write_text("text_a\ttext_b\tlabel\nonly two\tfields\n", encoding="utf-8")
    result = runner.invoke(segment_app, ["stats", "--tokenizer", str(trained_dir), "--task", "lcqmc",
                                         "--data-dir", str(data), "--out", str(out)])
    assert result.exit_code == 1 and "dev.tsv:2: expected 3 TAB-separated fields, got 2" in result.output


DATA = Path(os.environ.get("ERNIE_TINY_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.mark.slow
@pytest.mark.parametrize("task, folder", [("chnsenticorp", "chnsenticorp_htl"), ("lcqmc", "lcqmc")])
def test_default_tokenizer_is_40_percent_shorter_than_char(task, folder, tmp_path_factory):
    """The issue's target, with the vocabulary trained on the embedded corpus + both tasks' train splits."""
    if not (DATA / folder / "dev.tsv").is_file():
        pytest.skip(f"real data not found at {DATA / folder} (set ERNIE_TINY_DATA)")
    out = tmp_path_factory.getbasetemp() / "default-tokenizer"
    if not (out / "tokenizer_config.json").is_file():
        result = runner.invoke(segment_app, [
            "train", "--out", str(out), "--corpus", "embedded",
            "--corpus", str(DATA / "chnsenticorp_htl" / "train.tsv"), "--corpus", str(DATA / "lcqmc" / "train.tsv")])
        assert result.exit_code == 0, result.output
    stats_file = tmp_path_factory.getbasetemp() / f"{task}.json"
    result = runner.invoke(segment_app, ["stats", "--tokenizer", str(out), "--task", task,
                                         "--data-dir", str(DATA / folder), "--out", str(stats_file)])
    assert result.exit_code == 0, result.output
    stats = json.loads(stats_file.read_text(encoding="utf-8"))
    assert stats["reduction_text_pct"] >= 40 and stats["reduction_with_specials_pct"] >= 40
    assert stats["subword"]["unk_share"] < 0.005
