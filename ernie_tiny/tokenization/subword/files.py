"""The files of a subword tokenizer folder, read with one clear error line per problem.

A folder written by :meth:`SubwordTokenizer.save` holds::

    spm.model               sentencepiece model (pieces and their unigram scores)
    vocab.txt               one token per line, id = line number, the 5 ERNIE specials included
    tokenizer_config.json   {"kind": "subword", "segmentation": ..., ...}
    user_dict.txt           optional jieba user dictionary
    dict.wordseg.pickle     optional word list for forward-maximum-matching segmentation

The official ERNIE-tiny release names its files ``vocab.txt``,
``subword/spm_cased_simp_sampled.model`` and ``subword/dict.wordseg.pickle``.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import sentencepiece as spm

from ernie_tiny.tokenization.encoding import SPECIAL_TOKENS
from ernie_tiny.tokenization.vocab_files import index_vocab, read_vocab_lines

SPM_FILE = "spm.model"
USER_DICT_FILE = "user_dict.txt"
WORDSEG_DICT_FILE = "dict.wordseg.pickle"
RELEASE_SPM_FILE = "spm_cased_simp_sampled.model"


class TokenizerFileError(ValueError):
    """A tokenizer file is missing, unreadable or inconsistent (message names the file)."""


def read_vocab(path: str | os.PathLike) -> list[str]:
    """Tokens of ``vocab.txt`` in id order: one per line; ``token<TAB>anything`` keeps the first field.

    ERNIE vocabularies carry a second TAB field (an id or a count); ids are always line numbers.
    """
    path = Path(path)
    lines = read_vocab_lines(path, TokenizerFileError)
    first_fields = ((line.split("\t", 1)[0], index) for index, line in enumerate(lines))
    vocab = index_vocab(first_fields, path, TokenizerFileError)  # insertion order = line order = id order
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise TokenizerFileError(f"{path}: vocabulary lacks the special token(s) {', '.join(missing)}")
    return list(vocab)


def vocab_text(tokens: list[str]) -> str:
    return "".join(token + "\n" for token in tokens)


def load_spm(data: bytes, source: str) -> spm.SentencePieceProcessor:
    """A sentencepiece processor from serialized model bytes; ``source`` names the file in errors."""
    if not data:
        raise TokenizerFileError(f"{source}: empty sentencepiece model file")
    processor = spm.SentencePieceProcessor()
    try:
        processor.LoadFromSerializedProto(data)
    except (RuntimeError, OSError, TypeError) as err:
        raise TokenizerFileError(f"{source}: not a sentencepiece model ({err})") from None
    if processor.get_piece_size() == 0:
        raise TokenizerFileError(f"{source}: sentencepiece model has no pieces")
    return processor


def read_spm(path: str | os.PathLike) -> tuple[spm.SentencePieceProcessor, bytes]:
    """Load a sentencepiece model file, returning the processor and the file's bytes (for ``save``)."""
    path = Path(path)
    if not path.is_file():
        raise TokenizerFileError(f"{path}: sentencepiece model file not found")
    data = path.read_bytes()
    return load_spm(data, str(path)), data


class _WordListUnpickler(pickle.Unpickler):
    """Unpickles only plain containers of strings: a word-list file must not run code when read."""

    ALLOWED = {("builtins", name) for name in ("dict", "set", "frozenset", "list", "tuple", "str", "int",
                                               "float", "bool")}
    ALLOWED |= {("__builtin__", name) for name in ("dict", "set", "frozenset", "list", "tuple", "unicode",
                                                   "str", "int", "long", "float", "bool")}

    def find_class(self, module: str, name: str):  # noqa: ANN201 (pickle API)
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a word list")
        return super().find_class(module, name)


def parse_wordseg_dict(data: bytes, source: str) -> frozenset[str]:
    """The words of an ERNIE ``dict.wordseg.pickle`` (a pickled dict/set/list whose keys are words)."""
    try:
        obj = _WordListUnpickler(io.BytesIO(data), encoding="utf8").load()
    except Exception as err:  # pickle raises many types on corrupt input; all mean the same here
        raise TokenizerFileError(f"{source}: not a pickled word list ({type(err).__name__}: {err})") from None
    if not isinstance(obj, (dict, set, frozenset, list, tuple)):
        raise TokenizerFileError(f"{source}: expected a pickled dict/set/list of words, got {type(obj).__name__}")
    words = frozenset(obj)
    bad = next((w for w in words if not isinstance(w, str)), None)
    if bad is not None:
        raise TokenizerFileError(f"{source}: word list holds a non-string entry {bad!r}")
    if not words:
        raise TokenizerFileError(f"{source}: word list is empty")
    return words


def read_wordseg_dict(path: str | os.PathLike) -> tuple[frozenset[str], bytes]:
    """Load a ``dict.wordseg.pickle`` file: its words and the raw bytes (copied on ``save``)."""
    path = Path(path)
    if not path.is_file():
        raise TokenizerFileError(f"{path}: word-segmentation dictionary not found")
    data = path.read_bytes()
    return parse_wordseg_dict(data, str(path)), data


def read_user_dict(path: str | os.PathLike) -> str:
    """A jieba user dictionary's text (lines ``word [freq] [tag]``, as ``jieba.load_userdict`` reads)."""
    path = Path(path)
    if not path.is_file():
        raise TokenizerFileError(f"{path}: jieba user dictionary not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise TokenizerFileError(f"{path}: not UTF-8 text ({err})") from err
    return text


def find_release_file(directory: Path, name: str) -> Path | None:
    """``directory/name`` or ``directory/subword/name`` (the release tarball's layout), if present."""
    for candidate in (directory / name, directory / "subword" / name):
        if candidate.is_file():
            return candidate
    return None
