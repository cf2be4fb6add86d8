"""A scaled official ERNIE-tiny release, written at test time in the release's own formats.

    params/                              LoDTensor files (the writer of tests/fixtures/paddle_micro), ERNIE names,
                                         fc weights (in, out); a pre-training release: MLM and next-sentence heads
    ernie_config.json                    ERNIE-tiny's keys (sent_type_vocab_size, no intermediate_size), 3 layers
    vocab.txt                            token<TAB>id: the specials and the sentencepiece pieces ("▁酒店")
    subword/spm_cased_simp_sampled.model sentencepiece, default options (nmt_nfkc), trained on dictionary-cut text
    subword/dict.wordseg.pickle          a pickled {word: count} dict (protocol 2, as the Python 2 era release)

Nothing is downloaded: the words come from jieba over the embedded corpus. ``wssp_ids`` is
the reference tokenizer: ERNIE's ``WSSPTokenizer`` (cut the text as written, lower-case the
words, join by spaces, sentencepiece), ids by ``vocab.txt`` line.
"""

from __future__ import annotations

import io
import json
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import sentencepiece as spm

from ernie_tiny.convert.paddle import paddle_key_table
from paddle_format import write_lod_tensor
from ernie_tiny.data.embedded_text import embedded_corpus_texts
from ernie_tiny.model import ErnieConfig, HeadKind, build_model

# hidden 64 / 4 heads / 3 layers: ERNIE-tiny's 3 layers at a CPU size; Latin words to show case handling
EXTRA_WORDS = {"he": 9, "was": 9, "hotel": 5, "wifi": 5}
SIZES = {"hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 3, "max_position_embeddings": 130}


def corpus_lines(count: int = 400) -> list[str]:
    texts = embedded_corpus_texts()
    return texts[:: max(1, len(texts) // count)][:count]


def wssp_cut(chars: str, words: dict, window: int = 5) -> list[str]:
    """ERNIE's WSSPTokenizer.cut: forward maximum matching, at most ``window`` chars."""
    out, idx = [], 0
    while idx < len(chars):
        for size in range(window, 0, -1):
            if chars[idx:idx + size] in words or size == 1:
                out.append(chars[idx:idx + size])
                idx += size
                break
    return out


def wssp_pieces(text: str, words: dict, processor: spm.SentencePieceProcessor) -> list[str]:
    """ERNIE's WSSPTokenizer.tokenize: cut the text as written, lower-case each word, join, sentencepiece."""
    return processor.EncodeAsPieces(" ".join(w.lower() for w in wssp_cut(text, words) if w != " "))


def wssp_ids(text: str, words: dict, processor: spm.SentencePieceProcessor, vocab: list[str]) -> list[int]:
    index = {token: i for i, token in enumerate(vocab)}
    return [index.get(piece, index["[UNK]"]) for piece in wssp_pieces(text, words, processor)]


def write_release_pieces(directory: Path, joined: list[str], vocab_size: int, dropped: slice
                         ) -> tuple[spm.SentencePieceProcessor, list[str], set[str]]:
    """The release's ``subword/spm_cased_simp_sampled.model`` trained on ``joined`` (words joined by spaces)
    and its ``vocab.txt``, which lacks the pieces at ``dropped`` (they must come out as [UNK])."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(joined), model_writer=model, vocab_size=vocab_size,
                                   model_type="unigram", character_coverage=0.9995, minloglevel=2,
                                   hard_vocab_limit=False)
    (directory / "subword" / "spm_cased_simp_sampled.model").write_bytes(model.getvalue())
    processor = spm.SentencePieceProcessor(model_proto=model.getvalue())
    pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())
              if not (processor.is_unknown(i) or processor.is_control(i))]
    missing = set(pieces[dropped])
    vocab = ["[PAD]", "[CLS]", "[SEP]", "[MASK]"] + [p for p in pieces if p not in missing] + ["[UNK]"]
    (directory / "vocab.txt").write_text("".join(f"{t}\t{i}\n" for i, t in enumerate(vocab)), encoding="utf-8")
    return processor, vocab, missing


def build_release(directory: Path, seed: int = 0) -> dict:
    """Write the release under ``directory``; returns its words, processor, vocab and Paddle arrays."""
    import jieba

    lines = corpus_lines()
    counts = Counter(w for line in lines for w in jieba.lcut(line) if 2 <= len(w) <= 5 and w.strip())
    words = {w: n for w, n in counts.items() if n >= 2} | EXTRA_WORDS
    (directory / "subword").mkdir(parents=True)
    (directory / "subword" / "dict.wordseg.pickle").write_bytes(pickle.dumps(words, protocol=2))
    joined = [" ".join(w.lower() for w in wssp_cut(t, words) if w.strip()) for t in lines]
    joined += ["He was in the hotel", "wifi was good"] * 3
    processor, vocab, dropped = write_release_pieces(directory, joined, vocab_size=4000, dropped=slice(300, 330))

    ernie_config = {"attention_probs_dropout_prob": 0.1, "hidden_act": "relu", "hidden_dropout_prob": 0.1,
                    "initializer_range": 0.02, "sent_type_vocab_size": 2, "task_type_vocab_size": 3,
                    "vocab_size": len(vocab), **SIZES}
    (directory / "ernie_config.json").write_text(json.dumps(ernie_config, indent=2), encoding="utf-8")
    config = ErnieConfig(vocab_size=len(vocab), hidden_size=SIZES["hidden_size"],
                         num_layers=SIZES["num_hidden_layers"], num_heads=SIZES["num_attention_heads"],
                         intermediate_size=4 * SIZES["hidden_size"],
                         max_position_embeddings=SIZES["max_position_embeddings"])
    shapes = build_model(config, HeadKind.masked_lm, 0).state_dict()
    rng = np.random.default_rng(seed)
    arrays = {}
    (directory / "params").mkdir()
    for name, (key, transpose) in paddle_key_table(config, HeadKind.masked_lm).items():
        shape = tuple(shapes[key].shape)
        arrays[name] = rng.normal(0, 0.1, size=shape[::-1] if transpose else shape).astype(np.float32)
    hidden = SIZES["hidden_size"]
    arrays["next_sent_fc.w_0"] = rng.normal(0, 0.1, size=(hidden, 2)).astype(np.float32)  # dropped by the loader
    arrays["next_sent_fc.b_0"] = np.zeros(2, dtype=np.float32)
    for name, array in arrays.items():
        write_lod_tensor(directory / "params" / name, array)
    return {"words": words, "processor": processor, "vocab": vocab, "arrays": arrays, "dropped": dropped}
