"""Which tokenizer a folder holds, decided by its files."""

import json

import pytest

from ernie_tiny.tokenization.load import tokenizer_kind


def test_kind_comes_from_tokenizer_config(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"kind": "subword"}))
    assert tokenizer_kind(tmp_path) == "subword"


def test_hugging_face_config_without_kind_is_a_char_vocab(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    (tmp_path / "vocab.txt").write_text("[PAD]\n")
    assert tokenizer_kind(tmp_path) == "char"


def test_release_folder_with_sentencepiece_model_is_subword(tmp_path):
    (tmp_path / "vocab.txt").write_text("[PAD]\n")
    (tmp_path / "subword").mkdir()
    (tmp_path / "subword" / "spm_cased_simp_sampled.model").write_bytes(b"x")
    assert tokenizer_kind(tmp_path) == "subword"


def test_not_a_tokenizer_folder(tmp_path):
    with pytest.raises(ValueError, match="not a tokenizer folder"):
        tokenizer_kind(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("{broken")
    with pytest.raises(ValueError, match="unreadable tokenizer config"):
        tokenizer_kind(tmp_path)
