"""ERNIE-tiny's subword tokenizer: jieba words + sentencepiece + ERNIE vocab, with exact char spans.

Usage::

    from ernie_tiny.tokenization.subword import SubwordTokenizer, train_subword_tokenizer
    tok = SubwordTokenizer.from_directory("runs/tokenizer")
    tok.encode("酒店很干净").tokens
"""

from ernie_tiny.tokenization.subword.files import TokenizerFileError
from ernie_tiny.tokenization.subword.pieces import Segmentation, WordBoundary
from ernie_tiny.tokenization.subword.tokenizer import SubwordConfig, SubwordTokenizer
from ernie_tiny.tokenization.subword.train import (DEFAULT_MAX_PIECE_CHARS, DEFAULT_VOCAB_SIZE, SubwordTrainConfig,
                                      train_subword_tokenizer)

__all__ = ["DEFAULT_MAX_PIECE_CHARS", "DEFAULT_VOCAB_SIZE", "Segmentation", "SubwordConfig", "SubwordTokenizer",
           "SubwordTrainConfig", "TokenizerFileError", "WordBoundary", "train_subword_tokenizer"]
