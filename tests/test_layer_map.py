"""Layer maps: presets hold the exact matches, bad maps fail with one clear message."""

from __future__ import annotations

import json

import pytest

from ernie_tiny.distill.config import DistillConfig, GeneralDistillConfig
from ernie_tiny.distill.layer_map import (
    Feature,
    LayerMap,
    LayerMatch,
    last_only_layer_map,
    layer_map_preset,
    parse_layer_map,
    uniform_layer_map,
    validate,
)


def test_tinybert_12to3_preset_is_the_issue_default():
    layer_map = layer_map_preset("tinybert-12to3", teacher_layers=12, student_layers=3)
    assert list(layer_map) == [
        LayerMatch(0, 0, Feature.embeddings),
        LayerMatch(4, 1, Feature.hidden), LayerMatch(8, 2, Feature.hidden), LayerMatch(12, 3, Feature.hidden),
        # attention layer 4i is attention_scores[4i - 1]: the issue's "4i-1" as a 0-based list index
        LayerMatch(4, 1, Feature.attention), LayerMatch(8, 2, Feature.attention), LayerMatch(12, 3, Feature.attention),
    ]
    assert layer_map.term_names() == ["embeddings", "hidden_l1", "hidden_l2", "hidden_l3",
                                      "attention_l1", "attention_l2", "attention_l3"]


def test_tinybert_preset_refuses_other_layer_counts():
    with pytest.raises(ValueError, match="12-layer teacher and a 3-layer student.*use 'tinybert'"):
        layer_map_preset("tinybert-12to3", teacher_layers=6, student_layers=3)


@pytest.mark.parametrize("teacher_layers, student_layers, hidden", [
    (12, 3, [(4, 1), (8, 2), (12, 3)]),
    (6, 3, [(2, 1), (4, 2), (6, 3)]),  # the issue's 6-layer teacher
    (24, 4, [(6, 1), (12, 2), (18, 3), (24, 4)]),
    (4, 4, [(1, 1), (2, 2), (3, 3), (4, 4)]),
    (3, 1, [(3, 1)]),
])
def test_default_tinybert_map_follows_the_depths(teacher_layers, student_layers, hidden):
    layer_map = parse_layer_map(DistillConfig.__dataclass_fields__["layer_map"].default, teacher_layers,
                                student_layers)
    assert [(m.teacher_layer, m.student_layer) for m in layer_map if m.feature is Feature.hidden] == hidden
    assert [(m.teacher_layer, m.student_layer) for m in layer_map if m.feature is Feature.attention] == hidden
    assert list(layer_map)[0] == LayerMatch(0, 0, Feature.embeddings)
    assert layer_map_preset("tinybert", teacher_layers, student_layers) == uniform_layer_map(teacher_layers,
                                                                                             student_layers)


def test_default_map_is_the_tinybert_12to3_preset_for_12_to_3():
    assert layer_map_preset("tinybert", 12, 3) == layer_map_preset("tinybert-12to3", 12, 3)
    assert GeneralDistillConfig.__dataclass_fields__["layer_map"].default == "tinybert"


@pytest.mark.parametrize("teacher_layers, student_layers", [(12, 5), (2, 3), (7, 2)])
def test_default_map_without_a_sensible_uniform_map_is_one_clear_error(teacher_layers, student_layers):
    with pytest.raises(ValueError, match=f"no default layer map for a {teacher_layers}-layer teacher and a "
                                         f"{student_layers}-layer student.*last-only or a JSON list"):
        parse_layer_map("tinybert", teacher_layers, student_layers)


def test_uniform_matches_every_kth_teacher_layer():
    layer_map = uniform_layer_map(6, 3)
    assert [(m.teacher_layer, m.student_layer) for m in layer_map if m.feature is Feature.hidden] == [(2, 1), (4, 2), (6, 3)]
    assert uniform_layer_map(12, 3) == layer_map_preset("tinybert-12to3", 12, 3)
    with pytest.raises(ValueError, match="multiple of student layers"):
        uniform_layer_map(12, 5)


def test_last_only_matches_the_last_layers():
    assert list(last_only_layer_map(12, 3)) == [LayerMatch(12, 3, Feature.hidden), LayerMatch(12, 3, Feature.attention)]


def test_validate_names_the_out_of_range_layer():
    layer_map = LayerMap((LayerMatch(16, 3, Feature.hidden),))
    with pytest.raises(ValueError, match=r"match 0 \(hidden teacher 16 -> student 3.*teacher layer 16 is out of range 1..12"):
        validate(layer_map, teacher_layers=12, student_layers=3)
    with pytest.raises(ValueError, match="student layer 4 is out of range 1..3"):
        LayerMap((LayerMatch(12, 4, Feature.attention),)).validate(12, 3)


def test_layer_match_checks_its_fields():
    assert LayerMatch(4, 1, "hidden").feature is Feature.hidden
    with pytest.raises(ValueError, match="unknown feature 'logits'"):
        LayerMatch(4, 1, "logits")
    with pytest.raises(ValueError, match="embeddings match must be teacher 0 -> student 0"):
        LayerMatch(1, 0, Feature.embeddings)
    with pytest.raises(ValueError, match="1-based"):
        LayerMatch(0, 0, Feature.hidden)
    with pytest.raises(ValueError, match="weight must be"):
        LayerMatch(4, 1, Feature.hidden, weight=-1.0)
    with pytest.raises(ValueError, match="must be an int"):
        LayerMatch(4.0, 1, Feature.hidden)


def test_layer_map_rejects_empty_and_repeated_matches():
    with pytest.raises(ValueError, match="empty"):
        LayerMap(())
    with pytest.raises(ValueError, match="repeats hidden teacher 4 -> student 1"):
        LayerMap((LayerMatch(4, 1, Feature.hidden), LayerMatch(4, 1, Feature.hidden, weight=2.0)))


def test_term_names_disambiguate_one_student_layer_learning_two_teacher_layers():
    layer_map = LayerMap((LayerMatch(3, 1, Feature.hidden), LayerMatch(4, 1, Feature.hidden),
                          LayerMatch(8, 2, Feature.hidden)))
    assert layer_map.term_names() == ["hidden_l1_t3", "hidden_l1_t4", "hidden_l2"]


def test_parse_json_and_round_trip():
    spec = '[{"teacher_layer": 12, "student_layer": 3, "feature": "hidden", "weight": 2},' \
           ' {"teacher_layer": 0, "student_layer": 0, "feature": "embeddings"}]'
    layer_map = parse_layer_map(spec, teacher_layers=12, student_layers=3)
    assert list(layer_map) == [LayerMatch(12, 3, Feature.hidden, 2.0), LayerMatch(0, 0, Feature.embeddings)]
    assert parse_layer_map(layer_map.to_json(), 12, 3) == layer_map
    assert json.loads(layer_map.to_json())[0]["feature"] == "hidden"
    assert parse_layer_map(" uniform ", 12, 3) == uniform_layer_map(12, 3)


@pytest.mark.parametrize("spec, message", [
    ("tinybert-6to3", "unknown layer map preset 'tinybert-6to3'; known presets: tinybert, tinybert-12to3, uniform, "
                      "last-only"),
    ("[{", "layer map JSON"),
    ('[{"teacher_layer": 4, "student_layer": 1}]', r"item 0: missing \['feature'\]"),
    ('[{"teacher_layer": 4, "student_layer": 1, "feature": "hidden", "loss": "mse"}]', r"unknown keys \['loss'\]"),
    ('[{"teacher_layer": 4, "student_layer": 1, "feature": "hiden"}]', "item 0: unknown feature 'hiden'"),
    ('[{"teacher_layer": 14, "student_layer": 1, "feature": "hidden"}]', "teacher layer 14 is out of range"),
    ("[3]", "item 0: expected an object"),
])
def test_parse_errors_are_one_clear_line(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_layer_map(spec, teacher_layers=12, student_layers=3)
