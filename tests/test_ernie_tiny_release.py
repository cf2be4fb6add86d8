"""The official ERNIE-tiny release layout as a student: loading, its tokenizer, convert, distil into it."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from ernie_tiny.checkpoint import CheckpointError, load_pretrained, save_pretrained
from ernie_tiny.commands.distill import distill as distill_command
from ernie_tiny.commands.teacher import teacher_app
from ernie_tiny.convert.detect import CheckpointFormat, detect_format, load_checkpoint
from ernie_tiny.data.embedded_text import embedded_corpus_texts
from ernie_tiny.tasks import get_task, load_split
from ernie_tiny.heads import HeadKind
from ernie_tiny.model import ErnieConfig, build_model
from ernie_tiny.tokenization.char import CharTokenizer
from ernie_tiny.tokenization.subword import SubwordTokenizer

from release_fixture import build_release, wssp_ids, wssp_pieces


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ernie_tiny")
    return directory, build_release(directory)


def test_release_folder_loads_as_our_model_with_its_subword_tokenizer(release):
    directory, written = release
    assert detect_format(directory) is CheckpointFormat.ernie_tiny_release
    loaded = load_checkpoint(directory)
    assert isinstance(loaded.tokenizer, SubwordTokenizer) and loaded.meta.tokenizer_kind == "subword"
    assert loaded.config.preset == "paddle:ernie-tiny"
    assert (loaded.config.num_layers, loaded.config.hidden_size, loaded.config.num_heads) == (3, 64, 4)
    assert loaded.config.hidden_act == "relu" and loaded.config.intermediate_size == 256
    assert loaded.config.vocab_size == loaded.tokenizer.vocab_size == len(written["vocab"])
    assert loaded.meta.head is HeadKind.masked_lm  # a pre-training release: its MLM head comes along
    state = loaded.model.state_dict()
    arrays = written["arrays"]
    # fc weights are (in, out) in Paddle: transposed; embeddings and LayerNorms as they are
    assert np.array_equal(state["ernie.layers.2.attention.query.weight"].numpy(),
                          arrays["encoder_layer_2_multi_head_att_query_fc.w_0"].T)
    assert np.array_equal(state["ernie.embeddings.word_embeddings.weight"].numpy(), arrays["word_embedding"])
    assert np.array_equal(state["decoder_bias"].numpy(), arrays["mask_lm_out_fc.b_0"])


def test_release_tokenizer_reproduces_wssp_ids(release):
    directory, written = release
    tokenizer = load_checkpoint(directory).tokenizer
    texts = embedded_corpus_texts()[7::97][:120] + ["He was in the HOTEL, wifi 很好", "酒店房间非常干净", "", "  "]
    saw_unknown = False
    for text, encoding in zip(texts, tokenizer.encode_batch(texts, max_len=4096)):
        expected = wssp_ids(text, written["words"], written["processor"], written["vocab"])
        assert encoding.input_ids[1:-1] == expected, text
        saw_unknown |= any(p in written["dropped"] for p in wssp_pieces(text, written["words"], written["processor"]))
    assert saw_unknown  # pieces missing from vocab.txt -> [UNK] was exercised
    # cut as written, then lower-cased: "He" is no dictionary word, so it is two single chars, as in the release
    upper, lower = (tokenizer.encode(text).input_ids[1:-1] for text in ("He was", "he was"))
    assert upper == wssp_ids("He was", written["words"], written["processor"], written["vocab"])
    assert upper != lower  # lower-casing before the cut would have matched "he" and made them equal


def test_teacher_convert_writes_the_release_as_a_subword_checkpoint(release, tmp_path):
    directory, _ = release
    result = CliRunner().invoke(teacher_app, ["convert", str(directory), str(tmp_path / "tiny")])
    assert result.exit_code == 0, result.output
    assert "read ernie-tiny-release checkpoint" in result.output and "tokenizer: subword" in result.output
    converted, source = load_pretrained(tmp_path / "tiny"), load_checkpoint(directory)
    text = "交通很方便，He was here"
    assert converted.tokenizer.encode(text).input_ids == source.tokenizer.encode(text).input_ids
    assert converted.tokenizer.config.lower_after_segmentation
    for key, tensor in source.model.state_dict().items():
        assert torch.equal(tensor, converted.model.state_dict()[key]), key


def test_release_folder_without_its_subword_files_is_refused(release, tmp_path):
    directory, _ = release
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("ernie_config.json", "vocab.txt"):
        (bare / name).write_bytes((directory / name).read_bytes())
    (bare / "params").symlink_to(directory / "params")
    assert detect_format(bare) is CheckpointFormat.paddle
    with pytest.raises(CheckpointError, match=r"vocab.txt: \d+ of \d+ tokens are sentencepiece pieces"):
        load_checkpoint(bare)
    # with the files, under subword/ or beside vocab.txt, it is the release again
    (bare / "spm_cased_simp_sampled.model").write_bytes(
        (directory / "subword" / "spm_cased_simp_sampled.model").read_bytes())
    (bare / "dict.wordseg.pickle").write_bytes(pickle.dumps({"酒店": 1}, protocol=2))
    assert detect_format(bare) is CheckpointFormat.ernie_tiny_release
    assert isinstance(load_checkpoint(bare).tokenizer, SubwordTokenizer)


def test_hf_port_of_ernie_tiny_reads_the_release_tokenizer_beside_it(release, tmp_path):
    transformers = pytest.importorskip("transformers")
    directory, written = release
    source = load_checkpoint(directory)
    config = source.config
    reference = transformers.BertModel(transformers.BertConfig(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size, num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads, intermediate_size=config.intermediate_size, hidden_act="relu",
        max_position_embeddings=config.max_position_embeddings, layer_norm_eps=1e-5))
    port = tmp_path / "ernie-tiny-port"
    reference.save_pretrained(port)
    vocab_lines = "".join(t + "\n" for t in written["vocab"])
    (port / "vocab.txt").write_text(vocab_lines, encoding="utf-8")
    with pytest.raises(CheckpointError, match="sentencepiece pieces"):  # a BERT char vocab would be wrong
        load_checkpoint(port)
    (port / "subword").mkdir()
    for name in ("spm_cased_simp_sampled.model", "dict.wordseg.pickle"):
        (port / "subword" / name).write_bytes((directory / "subword" / name).read_bytes())
    loaded = load_checkpoint(port)
    assert isinstance(loaded.tokenizer, SubwordTokenizer) and loaded.meta.tokenizer_kind == "subword"
    text = "酒店房间非常干净"
    assert loaded.tokenizer.encode(text).input_ids == source.tokenizer.encode(text).input_ids


def test_distill_a_char_teacher_into_the_release_student(release, tmp_path):
    directory, _ = release
    task = get_task("reviews")
    train = load_split(task, None, "train")[:200]
    teacher_tokenizer = CharTokenizer.from_texts([e.text_a for e in train])
    teacher = build_model(ErnieConfig.from_preset("teacher-micro", vocab_size=teacher_tokenizer.vocab_size),
                          task.head, task.num_labels)
    save_pretrained(teacher, tmp_path / "teacher", teacher_tokenizer, task.name, list(task.labels))
    app = typer.Typer()
    app.command()(distill_command)
    out = tmp_path / "student"
    result = CliRunner().invoke(app, ["--teacher", str(tmp_path / "teacher"), "--task", "reviews",
                                      "--student-init", str(directory), "--out", str(out), "--device", "cpu",
                                      "--stage", "joint", "--steps-prediction", "3", "--eval-every", "3",
                                      "--limit", "24", "--batch-size", "8", "--max-len", "32"])
    assert result.exit_code == 0, result.output
    student = load_pretrained(out / "best")
    init = load_checkpoint(directory)
    assert student.config.num_layers == 3 and student.config.hidden_size == 64
    assert student.meta.head is HeadKind.sequence_classification and student.meta.labels == list(task.labels)
    assert student.tokenizer.kind == "subword" and student.tokenizer.config.lower_after_segmentation
    text = "房间很干净，服务好"
    assert student.tokenizer.encode(text).input_ids == init.tokenizer.encode(text).input_ids
    # the encoder started from the release weights and then trained: the 12 -> 3 default map was used
    assert student.meta.extra["distill_config"]["layer_map"] == "tinybert"
    before = init.model.ernie.layers[0].attention.query.weight
    after = student.model.ernie.layers[0].attention.query.weight
    assert not torch.equal(before, after) and (before - after).abs().max() < 0.05
