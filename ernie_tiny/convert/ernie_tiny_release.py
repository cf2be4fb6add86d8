"""Load the official ERNIE-tiny release as our model + its subword tokenizer (release-compatibility mode).

Baidu's ``ernie_tiny.tar.gz`` unpacks to::

    params/                                one LoDTensor file per parameter, ERNIE 1.0's names
    ernie_config.json                      3 layers, hidden 1024, 16 heads, relu, vocab 50006, 600 positions
    vocab.txt                              token<TAB>id, the sentencepiece pieces ("▁酒店") + ERNIE's specials
    subword/spm_cased_simp_sampled.model   sentencepiece model
    subword/dict.wordseg.pickle            word list for forward maximum matching

The network is ERNIE 1.0's (same parameter names, ``fc`` weights (in, out)), so the
weights go through :func:`ernie_tiny.convert.paddle.load_paddle_checkpoint`'s key table;
what differs is the tokenizer: dictionary matching (window 5) on the text, the words
lower-cased and joined by spaces, then sentencepiece, and ids through ``vocab.txt``
(:meth:`SubwordTokenizer.from_release`). A Hugging Face port of ERNIE-tiny (BertModel
weights, ``vocab.txt``) reads the same tokenizer files when they sit beside it; see
:func:`release_tokenizer_beside`.

Usage::

    loaded = load_ernie_tiny_release("ernie_tiny/")
    loaded.tokenizer.encode("酒店很干净").tokens     # ['[CLS]', '▁酒店', '▁很', '▁干净', '[SEP]']
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from ernie_tiny.checkpoint import CheckpointError, CheckpointMeta, LoadedCheckpoint
from ernie_tiny.convert.paddle import CONFIG_FILE as PADDLE_CONFIG_FILE
from ernie_tiny.convert.paddle import load_paddle_checkpoint
from ernie_tiny.model import build_model, encoder_of
from ernie_tiny.tokenization.subword import SubwordTokenizer, TokenizerFileError
from ernie_tiny.tokenization.subword.files import RELEASE_SPM_FILE, WORDSEG_DICT_FILE, find_release_file
from ernie_tiny.tokenization.subword.normalize import SPM_SPACE
from ernie_tiny.tokenization.vocab_files import VOCAB_FILE, read_vocab_lines

SOURCE_FORMAT = "ernie-tiny-release"


def is_release_folder(path: str | os.PathLike) -> bool:
    """A Paddle folder (``ernie_config.json``) with the release's sentencepiece model beside or under ``subword/``."""
    path = Path(path)
    return (path / PADDLE_CONFIG_FILE).is_file() and find_release_file(path, RELEASE_SPM_FILE) is not None


def release_tokenizer_beside(directory: Path, model_vocab_size: int) -> SubwordTokenizer | None:
    """The release tokenizer when ``directory`` holds its files (else None); its ids must fit the embeddings."""
    if find_release_file(directory, RELEASE_SPM_FILE) is None:
        return None
    try:
        tokenizer = SubwordTokenizer.from_release(directory)
    except TokenizerFileError as err:
        raise CheckpointError(str(err)) from None
    if tokenizer.vocab_size > model_vocab_size:
        raise CheckpointError(f"{directory / VOCAB_FILE}: {tokenizer.vocab_size} tokens but the model embeds only "
                              f"{model_vocab_size}")
    return tokenizer


def refuse_subword_vocab_as_char(directory: Path) -> None:
    """A ``vocab.txt`` of sentencepiece pieces without the sentencepiece model cannot be tokenized by chars.

    Read as a char vocabulary, ERNIE-tiny's ``▁酒店`` pieces would never match and most text
    would become single chars that the model never saw: refuse instead of encoding wrongly.
    """
    path = directory / VOCAB_FILE
    if not path.is_file():
        return
    tokens = [line.split("\t", 1)[0] for line in read_vocab_lines(path, CheckpointError)]
    marked = sum(token.startswith(SPM_SPACE) for token in tokens)
    if tokens and marked >= 0.1 * len(tokens):
        raise CheckpointError(f"{path}: {marked} of {len(tokens)} tokens are sentencepiece pieces ('{SPM_SPACE}...'): "
                              f"an ERNIE-tiny vocabulary; put {RELEASE_SPM_FILE} and {WORDSEG_DICT_FILE} from the "
                              "release beside it (or under subword/)")


def load_ernie_tiny_release(directory: str | os.PathLike, load_tokenizer_files: bool = True) -> LoadedCheckpoint:
    """Our model (preset ``paddle:ernie-tiny``) and the release's subword tokenizer; every parameter checked."""
    directory = Path(directory)
    loaded = load_paddle_checkpoint(directory, load_tokenizer_files=False)
    config = replace(loaded.config, preset="paddle:ernie-tiny")
    model = loaded.model
    tokenizer = release_tokenizer_beside(directory, config.vocab_size) if load_tokenizer_files else None
    if tokenizer is not None and tokenizer.pad_id != config.pad_token_id:
        # the embedding's padding row is the tokenizer's [PAD]: rebuild with it, same weights
        config = replace(config, pad_token_id=tokenizer.pad_id)
        rebuilt = build_model(config, loaded.meta.head, num_labels=getattr(model, "num_labels", 1) or 1)
        rebuilt.load_state_dict(model.state_dict())
        model = rebuilt
    encoder_of(model).config = config
    meta = CheckpointMeta(head=loaded.meta.head, tokenizer_kind="subword" if tokenizer else None,
                          extra={"source": str(directory), "source_format": SOURCE_FORMAT})
    return LoadedCheckpoint(model=model, config=config, meta=meta, tokenizer=tokenizer)
