"""Load whichever tokenizer a folder holds, by the ``kind`` in its ``tokenizer_config.json``."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ernie_tiny.tokenization.encoding import Tokenizer
from ernie_tiny.tokenization.vocab_files import TOKENIZER_CONFIG, VOCAB_FILE


def tokenizer_kind(directory: str | os.PathLike) -> str:
    """``"char"`` or ``"subword"``; a folder with only ``vocab.txt`` is an ERNIE 1.0 char vocab,
    one with a sentencepiece ``.model`` beside it an ERNIE-tiny release."""
    directory = Path(directory)
    config = directory / TOKENIZER_CONFIG
    if config.is_file():
        try:
            settings = json.loads(config.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{config}: unreadable tokenizer config: {err}") from err
        # A Hugging Face tokenizer_config.json has no "kind": those folders hold an ERNIE/BERT char vocab.
        if isinstance(settings, dict) and "kind" in settings:
            return settings["kind"]
    if (directory / VOCAB_FILE).is_file():
        # The ERNIE-tiny release ships its sentencepiece model beside (or under subword/) its vocab.txt.
        if any(directory.glob("*.model")) or any(directory.glob("subword/*.model")):
            return "subword"
        return "char"
    raise ValueError(f"{directory}: no {TOKENIZER_CONFIG} or vocab.txt: not a tokenizer folder")


def load_tokenizer(directory: str | os.PathLike) -> Tokenizer:
    kind = tokenizer_kind(directory)
    if kind == "char":
        from ernie_tiny.tokenization.char import CharTokenizer

        return CharTokenizer.from_directory(directory)
    if kind == "subword":
        from ernie_tiny.tokenization.subword import SubwordTokenizer

        return SubwordTokenizer.from_directory(directory)
    raise ValueError(f"{directory}: unknown tokenizer kind {kind!r} (expected 'char' or 'subword')")
