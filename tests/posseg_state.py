"""jieba's global tables (the ones ``jieba.posseg`` cuts with), made private to one test and restored after it."""

from __future__ import annotations

from ernie_tiny.tokenization.wordseg import pos_words


def private_posseg_tokenizer(monkeypatch):  # noqa: ANN201 (jieba has no type hints)
    """The tokenizer ``jieba.posseg`` cuts with, its dictionary tables copied so that ``add_word``,
    ``del_word`` and ``suggest_freq`` in the test change only the copies (``monkeypatch`` puts the
    originals back)."""
    import jieba.finalseg
    import jieba.posseg

    pos_words("预热")  # loads the dictionary, so the copies are of the loaded tables
    posseg = jieba.posseg.dt
    tokenizer = posseg.tokenizer
    monkeypatch.setattr(tokenizer, "FREQ", dict(tokenizer.FREQ))
    monkeypatch.setattr(tokenizer, "total", tokenizer.total)
    monkeypatch.setattr(tokenizer, "user_word_tag_tab", dict(tokenizer.user_word_tag_tab))
    monkeypatch.setattr(posseg, "word_tag_tab", dict(posseg.word_tag_tab))
    monkeypatch.setattr(jieba.finalseg, "Force_Split_Words", set(jieba.finalseg.Force_Split_Words))  # del_word
    return tokenizer
