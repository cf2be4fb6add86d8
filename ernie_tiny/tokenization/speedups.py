"""The tokenizers' C loops (``_speedups.c``, built by the install where a C compiler is), or None.

Three loops run there: the subword tokenizer's per-token loop (``encode_texts``, the Python one is in
``subword/fast_path.py``), the grouping of jieba-rs's route into jieba's words (``jieba_words``, the
Python one is ``CompiledJieba.words`` in ``wordseg.py``) and both tokenizers' assembly of ``[CLS] a [SEP]
(b [SEP])`` encodings (``encodings_from_columns``, the Python one is ``encoding_from_columns`` in
``encoding.py``). Each Python loop stays: it runs where the extension is missing or stale, and it is the
reference of the parity tests. Usage::

    speedups = compiled_speedups()
    if speedups is not None:
        columns, pairs = speedups.encode_texts(chunk_words, chunk_counts, cache, table, prefixes)
"""

from __future__ import annotations

from types import ModuleType

SPEEDUPS_VERSION = 4  # the _speedups.c this code expects (its VERSION); another build is stale: Python runs


def compiled_speedups() -> ModuleType | None:
    """The built ``_speedups`` module, or None where it was not built or was built from another version."""
    try:
        from ernie_tiny.tokenization import _speedups
    except ImportError:
        return None
    return _speedups if getattr(_speedups, "VERSION", None) == SPEEDUPS_VERSION else None
