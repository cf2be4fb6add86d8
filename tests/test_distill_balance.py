"""The joint stage's feature balance: the factor on hand-made totals, and the objective that keeps it from step 0."""

from __future__ import annotations

import pytest
import torch

from ernie_tiny.distill.config import Stage
from ernie_tiny.distill.data import build_items, collate_distill
from ernie_tiny.distill.teacher import TeacherTargets
from ernie_tiny.distill.layer_map import layer_map_preset
from ernie_tiny.distill.losses import (AttentionLossKind, DistillLossWeights, FeatureBalance, feature_balance_factor,
                                      feature_warmup_factor)
from ernie_tiny.distill.objective import DistillObjective
from ernie_tiny.distill.projection import HiddenProjection
from ernie_tiny.model import ErnieConfig, HeadKind, build_model
from ernie_tiny.tokenization.char import CharTokenizer

TEXTS = ["房间很干净服务也好", "太差了再也不来", "早餐一般", "位置方便价格合理", "隔音不好很吵", "前台热情"]


def test_balance_factor_known_values():
    assert feature_balance_factor(torch.tensor(5.0), torch.tensor(1.0)).item() == pytest.approx(0.2)
    assert feature_balance_factor(torch.tensor(5.0), torch.tensor(1.0), ratio=0.5).item() == pytest.approx(0.1)
    assert feature_balance_factor(torch.tensor(0.5), torch.tensor(2.0), ratio=3.0).item() == pytest.approx(12.0)
    assert feature_balance_factor(torch.tensor(0.0), torch.tensor(2.0)).item() == 1.0  # nothing to scale
    graph = torch.tensor(4.0, requires_grad=True)
    factor = feature_balance_factor(graph * 2, torch.tensor(2.0))
    assert factor.item() == pytest.approx(0.25) and not factor.requires_grad


def test_balance_options_are_validated():
    assert DistillLossWeights(feature_balance="none").feature_balance is FeatureBalance.none
    with pytest.raises(ValueError, match="feature_ratio"):
        DistillLossWeights(feature_ratio=0.0)
    with pytest.raises(ValueError):
        DistillLossWeights(feature_balance="sometimes")


def _objective(weights: DistillLossWeights) -> tuple[DistillObjective, torch.nn.Module, CharTokenizer]:
    tokenizer = CharTokenizer.from_texts(TEXTS)
    torch.manual_seed(0)
    config = ErnieConfig.from_preset("teacher-micro")
    teacher = build_model(ErnieConfig(**{**vars(config), "vocab_size": tokenizer.vocab_size}),
                          HeadKind.sequence_classification, 2).eval()
    student_config = ErnieConfig.from_preset("student-micro")
    student = build_model(ErnieConfig(**{**vars(student_config), "vocab_size": tokenizer.vocab_size}),
                          HeadKind.sequence_classification, 2)
    layer_map = layer_map_preset("tinybert", config.num_layers, student_config.num_layers)
    projection = HiddenProjection.for_layer_map(student_config.hidden_size, config.hidden_size, layer_map)
    return DistillObjective(student, projection, layer_map, weights, AttentionLossKind.kl), teacher, tokenizer


def _batch(tokenizer: CharTokenizer, texts: list[str], labels: list[int]):
    items = build_items([(t, None) for t in texts], labels, tokenizer, None, max_len=16)
    return collate_distill(items, tokenizer.pad_id, tokenizer.pad_id)


def _teacher(teacher: torch.nn.Module, batch) -> TeacherTargets:
    with torch.no_grad():
        out = teacher(batch.teacher.input_ids, batch.teacher.token_type_ids, batch.teacher.attention_mask,
                      output_hidden_states=True, output_attention_scores=True)
    return TeacherTargets(out.logits, out.encoder)


def _parts(objective: DistillObjective, loss, weights: DistillLossWeights) -> tuple[float, float]:
    """The weighted layer-map total and prediction total rebuilt from the logged (unweighted) terms."""
    feature = sum(weights.match_weight(m) * loss.terms[n].item()
                  for m, n in zip(objective.layer_map, objective.layer_map.term_names()))
    prediction = weights.soft * loss.terms["soft_ce"].item() + weights.hard * loss.terms["hard_ce"].item()
    return feature, prediction


def test_joint_loss_keeps_the_first_step_factor():
    weights = DistillLossWeights(hidden=2.0, attention=0.5, soft=1.0, hard=0.5, feature_ratio=0.5,
                                 feature_balance=FeatureBalance.first_step)
    objective, teacher, tokenizer = _objective(weights)
    first, second = _batch(tokenizer, TEXTS[:3], [1, 0, 0]), _batch(tokenizer, TEXTS[3:], [1, 0, 1])
    assert objective.feature_factor.item() == 0.0
    loss = objective(first, _teacher(teacher, first), Stage.joint)
    feature, prediction = _parts(objective, loss, weights)
    factor = 0.5 * prediction / feature
    assert objective.feature_factor.item() == pytest.approx(factor, rel=1e-5)
    assert loss.total.item() == pytest.approx(factor * feature + prediction, rel=1e-5)
    assert loss.total.item() == pytest.approx(1.5 * prediction, rel=1e-5)  # ratio 0.5 at the first step
    loss.total.backward()
    assert objective.projection.linears["shared"].weight.grad.abs().sum() > 0
    # later steps: the same factor, whatever the new totals are
    loss = objective(second, _teacher(teacher, second), Stage.joint)
    feature2, prediction2 = _parts(objective, loss, weights)
    assert feature2 != pytest.approx(feature)
    assert objective.feature_factor.item() == pytest.approx(factor, rel=1e-5)
    assert loss.total.item() == pytest.approx(factor * feature2 + prediction2, rel=1e-5)
    # the factor is part of the state a resumed run loads
    assert objective.state_dict()["feature_factor"].item() == pytest.approx(factor, rel=1e-5)


def test_eval_forward_does_not_set_the_factor_and_other_stages_are_unscaled():
    weights = DistillLossWeights(hard=0.5, feature_balance=FeatureBalance.first_step)
    objective, teacher, tokenizer = _objective(weights)
    batch = _batch(tokenizer, TEXTS[:4], [1, 0, 0, 1])
    objective.eval()
    objective(batch, _teacher(teacher, batch), Stage.joint)
    assert objective.feature_factor.item() == 0.0
    objective.train()
    intermediate = objective(batch, _teacher(teacher, batch), Stage.intermediate)
    assert set(intermediate.terms) == set(objective.layer_map.term_names())
    assert intermediate.total.item() == pytest.approx(sum(
        weights.match_weight(m) * intermediate.terms[n].item()
        for m, n in zip(objective.layer_map, objective.layer_map.term_names())), rel=1e-5)
    prediction = objective(batch, _teacher(teacher, batch), Stage.prediction)
    assert set(prediction.terms) == {"soft_ce", "hard_ce"}
    assert prediction.total.item() == pytest.approx(prediction.terms["soft_ce"].item()
                                                    + 0.5 * prediction.terms["hard_ce"].item(), rel=1e-5)
    assert objective.feature_factor.item() == 0.0  # only a joint training step sets it


def test_balance_none_sums_the_weighted_terms():
    weights = DistillLossWeights(hard=0.5, feature_balance=FeatureBalance.none)
    objective, teacher, tokenizer = _objective(weights)
    assert not hasattr(objective, "feature_factor")
    batch = _batch(tokenizer, TEXTS[:4], [1, 0, 0, 1])
    loss = objective(batch, _teacher(teacher, batch), Stage.joint)
    feature, prediction = _parts(objective, loss, weights)
    assert loss.total.item() == pytest.approx(feature + prediction, rel=1e-5)


def test_config_reads_the_balance_from_a_saved_dict(tmp_path):
    from ernie_tiny.distill.config import DistillConfig
    from ernie_tiny.training.state import plain

    config = DistillConfig(teacher="t", task="reviews", out_dir=str(tmp_path),
                           loss_weights={"hard": 0.5, "feature_balance": "first_step", "feature_ratio": 0.5})
    assert config.loss_weights.feature_balance is FeatureBalance.first_step and config.loss_weights.feature_ratio == 0.5
    saved = plain(config)["loss_weights"]
    assert saved["feature_balance"] == "first_step"
    assert DistillConfig(teacher="t", task="reviews", out_dir=str(tmp_path), loss_weights=saved).loss_weights \
        == config.loss_weights
    assert DistillConfig(teacher="t", task="reviews", out_dir=str(tmp_path)).loss_weights.feature_balance \
        is FeatureBalance.none  # the measured default


def test_feature_warmup_factor_ramps_linearly_from_zero():
    assert [feature_warmup_factor(s, 10, 0.4) for s in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert feature_warmup_factor(0, 10, 0.0) == 1.0  # no warm-up
    assert feature_warmup_factor(0, 10, 0.05) == 1.0  # a ramp shorter than one step is none
    assert feature_warmup_factor(3, 300, 1.0) == pytest.approx(0.01)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="feature_warmup"):
            DistillLossWeights(feature_warmup=bad)


def test_joint_loss_ramps_the_layer_map_total_and_leaves_other_stages_alone():
    weights = DistillLossWeights(hidden=2.0, hard=0.5, feature_warmup=0.5)
    objective, teacher, tokenizer = _objective(weights)
    objective.eval()  # no dropout: every step sees the same terms, only the factor moves
    batch = _batch(tokenizer, TEXTS[:4], [1, 0, 0, 1])
    targets = _teacher(teacher, batch)
    totals = {}
    for step in (0, 2, 5, 9):
        objective.start_step(step, 10)
        loss = objective(batch, targets, Stage.joint)
        feature, prediction = _parts(objective, loss, weights)
        totals[step] = loss.total.item()
        assert loss.total.item() == pytest.approx(min(1.0, step / 5) * feature + prediction, rel=1e-5), step
    assert totals[0] < totals[2] < totals[5] == pytest.approx(totals[9], rel=1e-6)
    objective.start_step(0, 10)  # factor 0: the intermediate stage still trains on its full terms
    intermediate = objective(batch, targets, Stage.intermediate)
    assert intermediate.total.item() == pytest.approx(sum(
        weights.match_weight(m) * intermediate.terms[n].item()
        for m, n in zip(objective.layer_map, objective.layer_map.term_names())), rel=1e-5)
