"""Which student layer learns which teacher layer: typed layer matches and named presets.

A :class:`LayerMatch` says "student layer ``s`` learns feature ``f`` of teacher layer
``t`` with weight ``w``". Layer numbers follow ``EncoderOutput`` indexing:

- ``Feature.embeddings``: always teacher 0 -> student 0, i.e. ``hidden_states[0]``
  (the embedding LayerNorm output).
- ``Feature.hidden``: layer ``i >= 1`` means ``hidden_states[i]``, the output of layer i.
- ``Feature.attention``: layer ``i >= 1`` means layer i's own attention,
  ``attention_scores[i - 1]`` (attention layers are 1-based, there is no layer 0).

Presets (``layer_map_preset(name, teacher_layers, student_layers)``):

- ``tinybert-12to3``: the issue's default for 12 -> 3. Embeddings 0 -> 0; student
  hidden layer i learns teacher hidden layer 4i; student attention layer i learns the
  attention of teacher layer 4i, which is ``attention_scores[4i - 1]``. The issue writes
  "4i (hidden) / 4i-1 (attention)": that "4i-1" is the 0-based index into the list of
  attention maps, exactly as TinyBERT's ``task_distill.py`` picks
  ``teacher_atts[i * layers_per_block + layers_per_block - 1]`` and
  ``teacher_reps[i * layers_per_block]``. In both the teacher's 4i-th layer supervises
  student layer i, so the student's attention and output of one layer come from one
  teacher layer (TextBrewer's ``L3_hidden_mse`` preset matches hidden states 0/4/8/12 the
  same way).
- ``tinybert`` (the default): TinyBERT's uniform map for whatever depths the teacher and
  student have: student layer i learns teacher layer i * T / S (hidden and attention),
  embeddings 0 -> 0, for any teacher depth T divisible by the student depth S (12 -> 3 gives
  exactly ``tinybert-12to3``, 6 -> 3 gives 2/4/6). Depths with no such map (12 -> 5) stop with
  a message that names the presets and the JSON form that do fit.
- ``uniform``: the same rule under its plain name.
- ``last-only``: hidden and attention of the last student layer learn the last teacher
  layer (MiniLM-style: the last layer only, no layer-count constraint).

Usage::

    layer_map = parse_layer_map("tinybert", teacher_layers=6, student_layers=3)   # the default: 2/4/6 -> 1/2/3
    layer_map = parse_layer_map('[{"teacher_layer": 12, "student_layer": 3, "feature": "hidden"}]', 12, 3)
    for match, name in zip(layer_map, layer_map.term_names()):
        ...  # name: "embeddings", "hidden_l1", "attention_l3"
    json_text = layer_map.to_json()  # store in the distillation config
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from enum import Enum


class Feature(str, Enum):
    embeddings = "embeddings"  # hidden_states[0]
    hidden = "hidden"  # hidden_states[i], i >= 1
    attention = "attention"  # attention_scores[i - 1], i >= 1


@dataclass(frozen=True)
class LayerMatch:
    teacher_layer: int
    student_layer: int
    feature: Feature
    weight: float = 1.0  # multiplies the feature's weight in DistillLossWeights

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "feature", Feature(self.feature))
        except ValueError:
            raise ValueError(f"unknown feature {self.feature!r}; expected one of "
                             f"{', '.join(f.value for f in Feature)}") from None
        for name in ("teacher_layer", "student_layer"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an int, got {value!r}")
        if not isinstance(self.weight, (int, float)) or not math.isfinite(self.weight) or self.weight < 0:
            raise ValueError(f"weight must be a finite number >= 0, got {self.weight!r}")
        if self.feature is Feature.embeddings and (self.teacher_layer, self.student_layer) != (0, 0):
            raise ValueError(f"embeddings match must be teacher 0 -> student 0, got "
                             f"{self.teacher_layer} -> {self.student_layer}")
        if self.feature is not Feature.embeddings and min(self.teacher_layer, self.student_layer) < 1:
            raise ValueError(f"{self.feature.value} layers are 1-based (use feature 'embeddings' for layer 0), "
                             f"got {self.teacher_layer} -> {self.student_layer}")

    def describe(self) -> str:
        return f"{self.feature.value} teacher {self.teacher_layer} -> student {self.student_layer} (weight {self.weight:g})"


@dataclass(frozen=True)
class LayerMap:
    """An ordered tuple of :class:`LayerMatch`; iterate over it, check it with :meth:`validate`."""

    matches: tuple[LayerMatch, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "matches", tuple(self.matches))
        if not self.matches:
            raise ValueError("layer map is empty: give at least one match")
        keys = Counter((m.feature, m.teacher_layer, m.student_layer) for m in self.matches)
        repeated = [key for key, count in keys.items() if count > 1]
        if repeated:
            feature, teacher, student = repeated[0]
            raise ValueError(f"layer map repeats {feature.value} teacher {teacher} -> student {student}")

    def __iter__(self) -> Iterator[LayerMatch]:
        return iter(self.matches)

    def __len__(self) -> int:
        return len(self.matches)

    def term_names(self) -> list[str]:
        """Loss term names in match order: ``embeddings``, ``hidden_l{s}``, ``attention_l{s}``.

        ``s`` is the student layer; when one student layer learns several teacher layers
        for the same feature, the names get ``_t{t}`` so that every name is unique.
        """
        per_student = Counter((m.feature, m.student_layer) for m in self.matches)
        names = []
        for m in self.matches:
            name = "embeddings" if m.feature is Feature.embeddings else f"{m.feature.value}_l{m.student_layer}"
            if per_student[(m.feature, m.student_layer)] > 1:
                name += f"_t{m.teacher_layer}"
            names.append(name)
        return names

    def validate(self, teacher_layers: int, student_layers: int) -> "LayerMap":
        """Raise ``ValueError`` naming the first match whose layer does not exist; return self."""
        for position, m in enumerate(self.matches):
            for side, layer, count in (("teacher", m.teacher_layer, teacher_layers),
                                       ("student", m.student_layer, student_layers)):
                if layer > count:
                    raise ValueError(f"layer map match {position} ({m.describe()}): {side} layer {layer} "
                                     f"is out of range 1..{count} for a {count}-layer {side}")
        return self

    def to_json(self) -> str:
        return json.dumps([{**asdict(m), "feature": m.feature.value} for m in self.matches])


def validate(layer_map: LayerMap, teacher_layers: int, student_layers: int) -> LayerMap:
    """Module-level spelling of :meth:`LayerMap.validate`."""
    return layer_map.validate(teacher_layers, student_layers)


def uniform_layer_map(teacher_layers: int, student_layers: int) -> LayerMap:
    """Embeddings 0 -> 0; hidden and attention student i -> teacher k*i, k = teacher_layers / student_layers."""
    if student_layers < 1 or teacher_layers < 1 or teacher_layers % student_layers != 0:
        raise ValueError(f"uniform layer map needs teacher layers ({teacher_layers}) to be a positive "
                         f"multiple of student layers ({student_layers})")
    step = teacher_layers // student_layers
    matches = [LayerMatch(0, 0, Feature.embeddings)]
    matches += [LayerMatch(step * i, i, Feature.hidden) for i in range(1, student_layers + 1)]
    matches += [LayerMatch(step * i, i, Feature.attention) for i in range(1, student_layers + 1)]
    return LayerMap(tuple(matches))


def last_only_layer_map(teacher_layers: int, student_layers: int) -> LayerMap:
    """Hidden state and attention of the last student layer learn those of the last teacher layer."""
    return LayerMap((LayerMatch(teacher_layers, student_layers, Feature.hidden),
                     LayerMatch(teacher_layers, student_layers, Feature.attention)))


def _tinybert_12to3(teacher_layers: int, student_layers: int) -> LayerMap:
    if (teacher_layers, student_layers) != (12, 3):
        raise ValueError(f"preset tinybert-12to3 is for a 12-layer teacher and a 3-layer student, got "
                         f"{teacher_layers} -> {student_layers}; use 'tinybert' (follows the depths) instead")
    return uniform_layer_map(12, 3)


def tinybert_layer_map(teacher_layers: int, student_layers: int) -> LayerMap:
    """TinyBERT's uniform map for these depths; a clear error when the teacher depth is no multiple."""
    if student_layers >= 1 and teacher_layers >= student_layers and teacher_layers % student_layers == 0:
        return uniform_layer_map(teacher_layers, student_layers)
    raise ValueError(f"no default layer map for a {teacher_layers}-layer teacher and a {student_layers}-layer "
                     f"student: TinyBERT's uniform map (student layer i learns teacher layer i * T / S) needs the "
                     f"teacher depth to be a multiple of the student depth; use --layer-map last-only or a JSON "
                     f"list of matches")


DEFAULT_PRESET = "tinybert"
PRESETS = {
    "tinybert": tinybert_layer_map,
    "tinybert-12to3": _tinybert_12to3,
    "uniform": uniform_layer_map,
    "last-only": last_only_layer_map,
}


def layer_map_preset(name: str, teacher_layers: int, student_layers: int) -> LayerMap:
    """The named preset, built for these layer counts and validated."""
    if name not in PRESETS:
        raise ValueError(f"unknown layer map preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name](teacher_layers, student_layers).validate(teacher_layers, student_layers)


def parse_layer_map(spec: str, teacher_layers: int, student_layers: int) -> LayerMap:
    """A preset name, or a JSON list of ``{"teacher_layer", "student_layer", "feature"[, "weight"]}`` objects."""
    text = spec.strip()
    if not text.startswith("["):
        return layer_map_preset(text, teacher_layers, student_layers)
    try:
        items = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"layer map JSON: {err}") from err
    allowed = {"teacher_layer", "student_layer", "feature", "weight"}
    matches = []
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"layer map JSON item {position}: expected an object, got {item!r}")
        missing = sorted({"teacher_layer", "student_layer", "feature"} - set(item))
        unknown = sorted(set(item) - allowed)
        if missing or unknown:
            raise ValueError(f"layer map JSON item {position}: missing {missing or 'nothing'}, "
                             f"unknown keys {unknown or 'none'}")
        try:
            matches.append(LayerMatch(**item))
        except ValueError as err:
            raise ValueError(f"layer map JSON item {position}: {err}") from None
    return LayerMap(tuple(matches)).validate(teacher_layers, student_layers)
