"""Pretraining losses (value by value) and the ErnieForPretraining head: tied decoder, gather, checkpoints."""

import math

import pytest
import torch

from ernie_tiny.checkpoint import load_pretrained, save_pretrained
from ernie_tiny.model import (ErnieConfig, ErnieForMaskedLM, ErnieForPretraining, HeadKind, masked_lm_loss,
                              sentence_distance_loss)
from ernie_tiny.tokenization.char import CharTokenizer


def log_softmax_at(row, index):
    return row[index] - math.log(sum(math.exp(v) for v in row))


def test_masked_lm_loss_averages_masked_positions_only():
    logits = torch.tensor([[[2.0, 0.0, 1.0], [0.0, 3.0, 0.0], [9.0, 9.0, -9.0]],
                           [[1.0, 1.0, 1.0], [0.5, 0.0, 2.0], [0.0, 0.0, 0.0]]])  # (B=2, T=3, V=3)
    labels = torch.tensor([[0, -100, -100], [-100, 2, 1]])
    expected = -(log_softmax_at([2.0, 0.0, 1.0], 0) + log_softmax_at([0.5, 0.0, 2.0], 2)
                 + log_softmax_at([0.0, 0.0, 0.0], 1)) / 3
    assert masked_lm_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    gathered = logits[labels != -100]  # (M, V): the head's own layout
    assert masked_lm_loss(gathered, labels[labels != -100]).item() == pytest.approx(expected, rel=1e-6)


def test_losses_with_nothing_labelled_are_zero_and_differentiable():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    loss = masked_lm_loss(logits, torch.full((2, 3), -100))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))
    assert sentence_distance_loss(torch.randn(2, 3), torch.tensor([-100, -100])).item() == 0.0


def test_sentence_distance_loss_values():
    logits = torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0], [5.0, 5.0, 5.0]])
    labels = torch.tensor([0, -100, 2])
    expected = -(log_softmax_at([1.0, 0.0, -1.0], 0) + log_softmax_at([5.0, 5.0, 5.0], 2)) / 2
    assert sentence_distance_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def micro_config(**overrides):
    values = dict(vocab_size=40, num_layers=2, hidden_dropout=0.0, attention_dropout=0.0) | overrides
    return ErnieConfig.from_preset("teacher-micro", **values)


def batch():
    torch.manual_seed(0)
    input_ids = torch.randint(5, 40, (3, 9))
    labels = torch.full((3, 9), -100)
    labels[0, 2], labels[1, 5], labels[2, 1], labels[2, 7] = 7, 8, 9, 10
    return input_ids, labels


def test_pretraining_head_gathers_masked_positions_and_matches_the_masked_lm_head():
    torch.manual_seed(1)
    model = ErnieForPretraining(micro_config(), num_labels=3).eval()
    input_ids, labels = batch()
    out = model(input_ids, labels=labels, sentence_distance_labels=torch.tensor([0, 2, -100]))
    full = model.as_masked_lm().eval()(input_ids).logits  # (B, T, V) of the plain masked-LM head
    assert out.masked_lm_logits.shape == (4, 40)
    assert torch.allclose(out.masked_lm_logits, full[labels != -100], atol=1e-5)
    assert out.terms["masked_lm"].item() == pytest.approx(masked_lm_loss(full, labels).item(), rel=1e-5)
    assert out.sentence_distance_logits.shape == (3, 3)
    assert out.loss.item() == pytest.approx(out.terms["masked_lm"].item() + out.terms["sentence_distance"].item())
    out.loss.backward()
    assert model.sentence_distance.weight.grad is not None
    unlabelled = model(input_ids)
    assert unlabelled.loss is None and unlabelled.terms == {} and unlabelled.masked_lm_logits.shape == (3, 9, 40)


def test_decoder_is_tied_to_the_word_embeddings():
    model = ErnieForPretraining(micro_config())
    names = dict(model.named_parameters())
    assert not any("decoder" in name and "bias" not in name for name in names)
    input_ids, labels = batch()
    with torch.no_grad():
        model.ernie.embeddings.word_embeddings.weight[12].fill_(0.0)
        model.decoder_bias.zero_()
    assert torch.all(model.eval()(input_ids, labels=labels).masked_lm_logits[:, 12] == 0)


def test_checkpoint_is_a_masked_lm_for_augmentation_and_finetuning(tmp_path):
    from ernie_tiny.augment.mlm import MaskedWordQuery
    from ernie_tiny.augment.teacher import TeacherMaskedLM

    tokenizer = CharTokenizer.from_texts(["房间很干净服务好酒店"])
    model = ErnieForPretraining(micro_config(vocab_size=tokenizer.vocab_size, use_task_id=True), num_labels=3)
    save_pretrained(model.as_masked_lm(), tmp_path / "ckpt", tokenizer=tokenizer, extra={"masking": {"basic": 1.0}})
    loaded = load_pretrained(tmp_path / "ckpt")
    assert loaded.meta.head is HeadKind.masked_lm and isinstance(loaded.model, ErnieForMaskedLM)
    assert loaded.config.use_task_id and loaded.meta.extra["masking"] == {"basic": 1.0}
    input_ids = torch.tensor([[1, 6, 7, 8, 2]])
    task_ids = torch.ones_like(input_ids)
    expected = model.eval()(input_ids, task_type_ids=task_ids).masked_lm_logits
    assert torch.allclose(loaded.model.eval()(input_ids, task_type_ids=task_ids).logits, expected, atol=1e-5)
    mlm = TeacherMaskedLM.from_pretrained(tmp_path / "ckpt", top_k=3)
    assert len(mlm.predict([MaskedWordQuery("房间很干净", 0, 2)])[0]) == 3
    again = ErnieForPretraining.from_masked_lm(loaded.model, num_labels=3)
    assert torch.equal(again.ernie.embeddings.word_embeddings.weight, model.ernie.embeddings.word_embeddings.weight)


def test_task_type_embeddings_are_off_by_default():
    plain = ErnieForPretraining(micro_config())
    assert not any("task_type" in name for name in plain.state_dict())
    with_tasks = ErnieForPretraining(micro_config(use_task_id=True)).eval()
    input_ids, _ = batch()
    zeros = with_tasks(input_ids, task_type_ids=torch.zeros_like(input_ids)).masked_lm_logits
    ones = with_tasks(input_ids, task_type_ids=torch.ones_like(input_ids)).masked_lm_logits
    assert not torch.allclose(zeros, ones)
