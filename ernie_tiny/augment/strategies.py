"""Data augmentation for task distillation: ERNIE Slim's strategies plus teacher-MLM word replacement.

ERNIE Slim (PaddlePaddle/ERNIE ``distill/README.md``, after Tang et al. 2019,
arXiv:1903.12136) makes new unlabelled examples from the task's own data:

1. noise: each word becomes [UNK] with probability ``p_unk`` (0.1);
2. same-POS replacement: each word becomes a random word of the same part of speech
   from the data set with probability ``p_pos`` (0.1), POS from ``jieba.posseg``;
3. n-gram sampling: with probability ``p_ngram`` only a random contiguous span of words
   is kept ("a span of length m at a random position, m random up to the length").

and TinyBERT's idea, for Chinese words (see :mod:`ernie_tiny.augment.mlm`):

4. teacher MLM: each all-CJK word is replaced with probability ``p_mlm`` by a word the
   teacher's masked-LM head predicts for its masked characters.

As in Tang et al., one uniform draw per word decides between 1, 2, 4 and "keep"
(``u < p_unk``: [UNK]; ``< p_unk + p_pos``: POS; ``< p_unk + p_pos + p_mlm``: MLM), and
n-gram sampling is applied after, to the whole text. The teacher's logits on the
new texts are their labels (:func:`ernie_tiny.augment.teacher.label_with_teacher`).
Each side of a pair is augmented independently (ERNIE Slim does so); with
``augment_text_a=False`` text_a stays as it is (ranking: the query is kept, only the
answer changes, and the teacher scores the new pair). NER has its own, tag-keeping
augmentation: :mod:`ernie_tiny.augment.ner`.

**[UNK] is a placeholder character.** The teacher (char tokenizer) and the student
(subword tokenizer) read the SAME augmented text and distillation aligns their tokens
by character span, so an [UNK] must be one span both tokenizers agree on. A literal
"[UNK]" string does not work: the BERT basic tokenizer splits it into "[", "unk", "]".
A replaced word is therefore rendered as ONE character, U+2E2E REVERSED QUESTION MARK
``⸮``, which is in neither vocabulary, so both tokenizers map it to their unk token
with a 1-char span. It was chosen because it is Unicode punctuation (BERT's basic
tokenizer splits it off as its own word instead of gluing it to neighbouring Latin
letters), has no compatibility decomposition (NFKC keeps it, unlike U+2047 ``⁇``
which becomes "??"), is not a control/private-use char (BERT's cleaning deletes
U+E000 and U+FFFD), and does not occur in the task data or the embedded corpora.
Tokenizer vocabularies must be built from un-augmented text (the char vocabulary built
by ``CharTokenizer.from_texts`` would otherwise learn it), and a sentencepiece model
needs ``byte_fallback`` off so the char becomes <unk>, not three byte pieces.
:func:`render` takes any other ``unk_token`` for other uses.

**Determinism.** Example ``i`` draws from ``random.Random`` seeded with ``(seed, i)``
only, so its outputs do not depend on other examples, on the order of processing or on
the process; the POS vocabulary is sorted; MLM candidates are a deterministic function of
(text, word) computed in eval mode.

Example::

    config = AugmentConfig(num_aug=4, seed=1)
    new = augment_examples([("房间很干净", None), ("服务很好", None)], config)
    new[0].text_a   # e.g. '房间⸮干净'
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from ernie_tiny.augment.mlm import MaskedWordPredictor, MaskedWordQuery, as_predictor, is_chinese_word
from ernie_tiny.augment.pos import PosVocabulary, is_blank, tag_texts

UNK_PLACEHOLDER = "\u2e2e"  # "⸮": see the module docstring for why this character
MLM_BLOCK = 256  # queries per predictor call: the unit of progress reporting


@dataclass(frozen=True)
class AugmentConfig:
    num_aug: int = 4  # new examples per original (fewer when the text allows fewer distinct variants)
    p_unk: float = 0.1  # per word: replace by [UNK] (ERNIE Slim, Tang et al.: 0.1)
    p_pos: float = 0.1  # per word: replace by a same-POS word of the data set (ERNIE Slim, Tang et al.: 0.1)
    p_mlm: float = 0.0  # per all-CJK word: replace by a teacher-MLM candidate; needs an MLM teacher
    p_ngram: float = 0.25  # per text: keep only a random span of words (Tang et al.: 0.25)
    ngram_min: int = 1  # shortest kept span, in words
    ngram_max: int | None = None  # longest kept span; None: up to all words but one (ERNIE Slim)
    mlm_top_k: int = 15  # candidates per masked word to pick from (TinyBERT's M = 15)
    max_tries: int = 10  # draws per requested example before giving up on short texts
    augment_text_a: bool = True  # False: only text_b changes (ranking: augment the answer, keep the query)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_aug < 0:
            raise ValueError(f"num_aug must be >= 0, got {self.num_aug}")
        for name in ("p_unk", "p_pos", "p_mlm", "p_ngram"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.p_unk + self.p_pos + self.p_mlm > 1.0 + 1e-9:
            raise ValueError(f"p_unk + p_pos + p_mlm must be <= 1 (one draw per word picks at most one), got "
                             f"{self.p_unk + self.p_pos + self.p_mlm:g}")
        if self.ngram_min < 1:
            raise ValueError(f"ngram_min must be >= 1, got {self.ngram_min}")
        if self.ngram_max is not None and self.ngram_max < self.ngram_min:
            raise ValueError(f"ngram_max ({self.ngram_max}) must be >= ngram_min ({self.ngram_min})")
        if self.mlm_top_k < 1:
            raise ValueError(f"mlm_top_k must be >= 1, got {self.mlm_top_k}")
        if self.max_tries < 1:
            raise ValueError(f"max_tries must be >= 1, got {self.max_tries}")


class EditKind(str, Enum):
    unk = "unk"
    pos = "pos"
    mlm = "mlm"


@dataclass(frozen=True)
class WordEdit:
    index: int  # which word of the text
    kind: EditKind  # kept words have no edit
    replacement: str | None = None  # pos: the new word
    pick: float = 0.0  # mlm: uniform draw in [0, 1) that picks one of the candidates


@dataclass(frozen=True)
class TextPlan:
    """The edited words of one augmented copy (sparse: kept words have no edit) and the kept span."""

    edits: tuple[WordEdit, ...]
    span: tuple[int, int] | None = None  # n-gram sampling: keep words [start, end)

    @property
    def changes_text(self) -> bool:
        return self.span is not None or bool(self.edits)

    def kept_edits(self) -> tuple[WordEdit, ...]:
        if self.span is None:
            return self.edits
        return tuple(edit for edit in self.edits if self.span[0] <= edit.index < self.span[1])

    def strategies(self) -> set[str]:
        return {edit.kind.value for edit in self.kept_edits()} | ({"ngram"} if self.span is not None else set())


@dataclass(frozen=True)
class AugmentedExample:
    source_index: int  # index of the original example in the input list
    text_a: str
    text_b: str | None
    strategies: tuple[str, ...] = field(default=(), compare=False)  # which of unk/pos/mlm/ngram changed it

    @property
    def pair(self) -> tuple[str, str | None]:
        return self.text_a, self.text_b


def example_rng(seed: int, index: int) -> random.Random:
    """The random stream of example ``index``: string seeds go through SHA-512, stable across processes."""
    return random.Random(f"ernie-tiny-augment/{seed}/{index}")


def render(words: Sequence[str | None], unk_token: str = UNK_PLACEHOLDER) -> str:
    """Join words back into text; ``None`` (a word replaced by [UNK]) becomes ``unk_token``."""
    return "".join(unk_token if word is None else word for word in words)


def plan_text(words: Sequence[tuple[str, str]], rng: random.Random, config: AugmentConfig,
              pos_vocab: PosVocabulary, use_mlm: bool) -> TextPlan:
    """Draw the edits of one augmented copy of a text given as ``(word, pos_tag)`` pairs.

    Blank words draw nothing and stay. A POS draw on a tag with no other word, and an
    MLM draw on a non-CJK word (or without ``use_mlm``), keep the word.
    """
    unk_until, pos_until = config.p_unk, config.p_unk + config.p_pos
    mlm_until = pos_until + config.p_mlm
    edits = []
    for index, (word, tag) in enumerate(words):
        if is_blank(word):
            continue
        u = rng.random()
        if u < unk_until:
            edits.append(WordEdit(index, EditKind.unk))
        elif u < pos_until:
            replacement = pos_vocab.sample(tag, rng, exclude=word)
            if replacement is not None:
                edits.append(WordEdit(index, EditKind.pos, replacement=replacement))
        elif u < mlm_until:
            pick = rng.random()
            if use_mlm and is_chinese_word(word):
                edits.append(WordEdit(index, EditKind.mlm, pick=pick))
    span = None
    if len(words) >= 2 and rng.random() < config.p_ngram:
        longest = len(words) - 1 if config.ngram_max is None else min(config.ngram_max, len(words) - 1)
        n = rng.randint(min(config.ngram_min, longest), longest)
        begin = rng.randrange(len(words) - n + 1)
        span = (begin, begin + n)
    return TextPlan(tuple(edits), span)


def _word_query(words: Sequence[tuple[str, str]], index: int) -> MaskedWordQuery:
    text = "".join(word for word, _ in words)
    start = sum(len(word) for word, _ in words[:index])
    return MaskedWordQuery(text, start, start + len(words[index][0]))


def mlm_queries(words: Sequence[tuple[str, str]], plan: TextPlan) -> list[MaskedWordQuery]:
    """The masked-LM questions a plan needs answered (only words that survive n-gram sampling)."""
    return [_word_query(words, edit.index) for edit in plan.kept_edits() if edit.kind is EditKind.mlm]


def apply_plan(words: Sequence[tuple[str, str]], plan: TextPlan, candidates: Mapping[MaskedWordQuery, Sequence[str]],
               top_k: int) -> list[str | None]:
    """The augmented words (``None`` = [UNK]); an MLM word with no candidate stays as it was."""
    new_words: list[str | None] = [word for word, _ in words]
    for edit in plan.edits:
        if edit.kind is EditKind.unk:
            new_words[edit.index] = None
        elif edit.kind is EditKind.pos:
            new_words[edit.index] = edit.replacement
        elif plan.span is None or plan.span[0] <= edit.index < plan.span[1]:  # mlm
            options = list(candidates.get(_word_query(words, edit.index), ()))[:top_k]
            if options:
                new_words[edit.index] = options[min(int(edit.pick * len(options)), len(options) - 1)]
    return new_words if plan.span is None else new_words[plan.span[0]:plan.span[1]]


def _predict_all(mlm: MaskedWordPredictor | None, queries: Sequence[MaskedWordQuery],
                 progress: Callable[[str, int, int], None] | None) -> dict[MaskedWordQuery, list[str]]:
    unique = list(dict.fromkeys(queries))
    if not unique:
        return {}
    if mlm is None:
        raise ValueError("MLM edits were drawn but no masked-LM predictor was given")
    found: dict[MaskedWordQuery, list[str]] = {}
    for begin in range(0, len(unique), MLM_BLOCK):
        block = unique[begin:begin + MLM_BLOCK]
        found.update(zip(block, mlm.predict(block)))
        if progress is not None:
            progress("mlm", len(found), len(unique))
    return found


def _require_mlm(config: AugmentConfig, mlm: object) -> MaskedWordPredictor | None:
    if config.p_mlm > 0 and mlm is None:
        raise ValueError("p_mlm > 0 needs a masked-LM predictor (an ErnieForMaskedLM teacher: --mlm-teacher)")
    return as_predictor(mlm) if mlm is not None else None


@dataclass(frozen=True)
class TaggedPair:
    """The jieba words of an example's text_a and text_b (None for single-text examples)."""

    words_a: Sequence[tuple[str, str]]
    words_b: Sequence[tuple[str, str]] | None = None


@dataclass(frozen=True)
class ExamplePlan:
    plan_a: TextPlan
    plan_b: TextPlan | None

    @property
    def changes_example(self) -> bool:
        return self.plan_a.changes_text or (self.plan_b is not None and self.plan_b.changes_text)


def plan_example(index: int, tagged: TaggedPair, config: AugmentConfig, pos_vocab: PosVocabulary,
                 use_mlm: bool) -> list[ExamplePlan]:
    """Up to ``num_aug`` distinct plans that change the example, drawn from example ``index``'s own stream.

    Plans that change nothing or repeat an earlier plan are redrawn, up to
    ``num_aug * max_tries`` draws, so short texts still get several distinct copies.
    """
    rng = example_rng(config.seed, index)
    plans: list[ExamplePlan] = []
    seen: set[ExamplePlan] = set()
    for _ in range(config.num_aug * config.max_tries):
        if len(plans) == config.num_aug:
            break
        plan_a = plan_text(tagged.words_a, rng, config, pos_vocab, use_mlm) if config.augment_text_a else TextPlan(())
        plan_b = plan_text(tagged.words_b, rng, config, pos_vocab, use_mlm) if tagged.words_b is not None else None
        plan = ExamplePlan(plan_a, plan_b)
        if plan.changes_example and plan not in seen:
            seen.add(plan)
            plans.append(plan)
    return plans


def _example_queries(tagged: TaggedPair, plans: Sequence[ExamplePlan]) -> list[MaskedWordQuery]:
    queries = []
    for plan in plans:
        queries += mlm_queries(tagged.words_a, plan.plan_a)
        if plan.plan_b is not None:
            queries += mlm_queries(tagged.words_b, plan.plan_b)
    return queries


def realize_example(index: int, tagged: TaggedPair, plans: Sequence[ExamplePlan],
                    candidates: Mapping[MaskedWordQuery, Sequence[str]],
                    config: AugmentConfig) -> list[AugmentedExample]:
    """Render the plans; drop blank sides, copies of the original and repeats."""
    original_a = render(word for word, _ in tagged.words_a).strip()
    original_b = None if tagged.words_b is None else render(word for word, _ in tagged.words_b).strip()
    seen = {(original_a, original_b)}
    out = []
    for plan in plans:
        new_a = render(apply_plan(tagged.words_a, plan.plan_a, candidates, config.mlm_top_k)).strip()
        new_b = None
        if plan.plan_b is not None:
            new_b = render(apply_plan(tagged.words_b, plan.plan_b, candidates, config.mlm_top_k)).strip()
        if not new_a or (tagged.words_b is not None and not new_b) or (new_a, new_b) in seen:
            continue
        seen.add((new_a, new_b))
        used = plan.plan_a.strategies() | (plan.plan_b.strategies() if plan.plan_b is not None else set())
        out.append(AugmentedExample(index, new_a, new_b, tuple(sorted(used))))
    return out


def as_pair(example: object) -> tuple[str, str | None]:
    """``"text"``, ``(text_a, text_b)`` or anything with ``text_a``/``text_b`` (a task Example)."""
    if isinstance(example, str):
        return example, None
    if isinstance(example, (tuple, list)) and len(example) == 2:
        return example[0], example[1]
    if hasattr(example, "text_a"):
        return example.text_a, getattr(example, "text_b", None)
    raise TypeError(f"cannot augment {type(example).__name__}: expected a str, a (text_a, text_b) pair or an Example")


def tag_pairs(pairs: Sequence[tuple[str, str | None]], tagged: Mapping[str, Sequence[tuple[str, str]]] | None = None,
              workers: int = 1, cache_dir: str | os.PathLike | None = None, hmm: bool = True,
              progress: Callable[[int, int], None] | None = None) -> list[TaggedPair]:
    """jieba words and tags of both sides of every pair; texts found in ``tagged`` are not re-tagged."""
    texts = list(dict.fromkeys(t for pair in pairs for t in pair if t is not None))
    tagged_by_text = dict(tagged or {})
    missing = [t for t in texts if t not in tagged_by_text]
    if missing:
        tagged_by_text.update(zip(missing, tag_texts(missing, hmm=hmm, workers=workers, cache_dir=cache_dir,
                                                     progress=progress)))
    for text in texts:
        if "".join(word for word, _ in tagged_by_text[text]) != text:
            raise ValueError(f"the words given for {text[:40]!r} do not spell the text")
    return [TaggedPair(tagged_by_text[a], None if b is None else tagged_by_text[b]) for a, b in pairs]


def augment_examples(examples: Sequence[object], config: AugmentConfig, pos_vocab: PosVocabulary | None = None,
                     tagged: Mapping[str, Sequence[tuple[str, str]]] | None = None,
                     mlm: MaskedWordPredictor | Callable | None = None, workers: int = 1,
                     cache_dir: str | os.PathLike | None = None, hmm: bool = True,
                     progress: Callable[[str, int, int], None] | None = None) -> list[AugmentedExample]:
    """New ``(text_a, text_b)`` examples, up to ``config.num_aug`` per input, in input order.

    ``examples``: strings, ``(text_a, text_b)`` pairs or task ``Example`` objects. Texts are
    POS-tagged with jieba (``workers`` processes, cached in ``cache_dir``) unless ``tagged``
    maps a text to its ``(word, tag)`` list; the POS vocabulary is built from the examples'
    words unless given. ``mlm`` is needed when ``config.p_mlm > 0``.
    ``progress(stage, done, total)`` is called with stage "tag", "augment" and "mlm".
    """
    predictor = _require_mlm(config, mlm)
    pairs = [as_pair(example) for example in examples]
    report_tags = (lambda done, total: progress("tag", done, total)) if progress is not None else None
    tagged_pairs = tag_pairs(pairs, tagged, workers=workers, cache_dir=cache_dir, hmm=hmm, progress=report_tags)
    if pos_vocab is None:
        pos_vocab = PosVocabulary.from_tagged((words for pair in tagged_pairs for words in (pair.words_a, pair.words_b)
                                               if words is not None), exclude_chars=UNK_PLACEHOLDER)
    plans = []
    for index, tagged_pair in enumerate(tagged_pairs):
        plans.append(plan_example(index, tagged_pair, config, pos_vocab, use_mlm=config.p_mlm > 0))
        if progress is not None and ((index + 1) % 500 == 0 or index + 1 == len(tagged_pairs)):
            progress("augment", index + 1, len(tagged_pairs))
    queries = [q for tagged_pair, example_plans in zip(tagged_pairs, plans)
               for q in _example_queries(tagged_pair, example_plans)]
    candidates = _predict_all(predictor, queries, progress)
    out = []
    for index, (tagged_pair, example_plans) in enumerate(zip(tagged_pairs, plans)):
        out += realize_example(index, tagged_pair, example_plans, candidates, config)
    return out
