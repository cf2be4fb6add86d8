"""Issue 13's sweep: messages name the data and each folder once, outputs land where the command says."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ernie_tiny.bench.benchmark import BenchError, find_task_folder
from ernie_tiny.cli import app


def test_a_missing_dev_file_names_each_folder_once(tmp_path):
    with pytest.raises(BenchError) as err:
        find_task_folder(tmp_path, "reviews", "data")
    assert "(looked for reviews)" in str(err.value)
    with pytest.raises(BenchError) as err:
        find_task_folder(tmp_path, "chnsenticorp", "data")
    assert "(looked for chnsenticorp, chnsenticorp_htl)" in str(err.value)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "tok"
    result = CliRunner().invoke(app, ["segment", "train", "--out", str(out), "--vocab-size", "400",
                                      "--max-sentences", "300"])
    assert result.exit_code == 0, result.output
    return out


def test_segment_stats_names_the_folder_and_writes_beside_the_tokenizer(tokenizer_dir, tmp_path, monkeypatch):
    data = tmp_path / "my_pairs"
    data.mkdir()
    (data / "dev.tsv").write_text("text_a\ttext_b\tlabel\n酒店很干净\t早餐一般\t1\n这是什么？\t那是什么？\t0\n",
                                  encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # the old default wrote runs/segment-stats/ into the current folder
    result = CliRunner().invoke(app, ["segment", "stats", "--tokenizer", str(tokenizer_dir), "--task", "lcqmc",
                                      "--data-dir", str(data)], terminal_width=200)
    assert result.exit_code == 0, result.output
    written = tokenizer_dir / "stats" / "my_pairs-dev.json"
    assert json.loads(written.read_text(encoding="utf-8"))["n_examples"] == 2
    assert f"wrote {written}" in result.output and not (tmp_path / "runs").exists()
    shown = " ".join(result.output.split())  # the table title wraps to the table's width
    assert f"{data} dev: 2 examples" in shown and "lcqmc dev" not in shown


FIELD = st.text(st.sampled_from(["好", "a", "1", "0", " ", "\r", "\u2028", "\x85", "\ufeff", "é", "\x00", '"']),
                max_size=4)
ROWS = st.lists(st.lists(FIELD, min_size=0, max_size=4).map("\t".join), max_size=4).map("\n".join)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(st.binary(max_size=50), ROWS.map(lambda rows: "label\ttext_a\n" + rows), ROWS,
                         st.text(max_size=30)))
def test_any_tsv_gives_a_result_or_one_error_line_naming_the_file(tmp_path, content):
    data = tmp_path / "random"
    data.mkdir(exist_ok=True)
    tsv = data / "train.tsv"
    tsv.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    out = tmp_path / "aug.tsv"
    out.unlink(missing_ok=True)
    result = CliRunner().invoke(app, ["augment", "--task", "chnsenticorp", "--data-dir", str(data), "--out", str(out),
                                      "--num-aug", "1", "--no-cache", "--workers", "1", "--device", "cpu"])
    assert "Traceback" not in result.output and result.exit_code in (0, 1), result.output
    if result.exit_code == 1:
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {tsv}"), result.output
        assert not out.exists()
    else:
        assert out.read_text(encoding="utf-8").startswith("text_a")
