"""The FLOP count of bench's theoretical speed-ups: the formula by hand, and against torch's own counter."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from ernie_tiny.flops import forward_macs, pass_flops
from ernie_tiny.heads import HeadKind
from ernie_tiny.model import ErnieConfig, build_model


def counted_flops(model: torch.nn.Module, batch: int, seq_len: int) -> int:
    """FLOPs torch counts for one forward; the math attention kernel, whose matmuls the counter sees."""
    torch.manual_seed(0)
    input_ids = torch.randint(1, 100, (batch, seq_len))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, seq_len // 2:] = 0  # padded positions cost what real ones do
    with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(input_ids=input_ids, attention_mask=attention_mask)
    return counter.get_total_flops()


@pytest.mark.parametrize("preset, head, num_labels, batch, seq_len", [
    ("teacher-micro", HeadKind.sequence_classification, 2, 3, 17),
    ("student-micro", HeadKind.sequence_classification, 3, 2, 64),
    ("student-micro", HeadKind.token_classification, 7, 2, 33),
    ("teacher-micro", HeadKind.ranking, 2, 4, 9),
    ("student-micro", HeadKind.masked_lm, 0, 1, 12),
])
def test_forward_flops_agree_with_torchs_flop_counter(preset, head, num_labels, batch, seq_len):
    config = ErnieConfig.from_preset(preset, vocab_size=200)
    model = build_model(config, head, num_labels).eval()
    ours = pass_flops(config, head, num_labels, [(batch, seq_len)])
    assert ours == pytest.approx(counted_flops(model, batch, seq_len), rel=0.02)


def test_forward_macs_by_hand_and_the_attention_term_grows_with_the_square_of_length():
    config = ErnieConfig(hidden_size=8, num_layers=2, num_heads=2, intermediate_size=32, vocab_size=50)
    # per layer 4*5*64 + 2*25*8 + 2*5*8*32 = 1280 + 400 + 2560 = 4240; pooler 64; classifier 8*3
    assert forward_macs(config, HeadKind.sequence_classification, 3, batch=1, seq_len=5) == 2 * 4240 + 64 + 24
    one, two = (forward_macs(config, HeadKind.encoder, 0, 1, s) - 64 for s in (10, 20))
    assert two - 2 * one == 2 * (2 * 20 ** 2 * 8 - 2 * (2 * 10 ** 2 * 8))  # 2 layers; only 2 s^2 h is not linear
    assert pass_flops(config, HeadKind.encoder, 0, [(2, 5), (1, 7)]) == 2 * (
        forward_macs(config, HeadKind.encoder, 0, 2, 5) + forward_macs(config, HeadKind.encoder, 0, 1, 7))
    with pytest.raises(ValueError, match="must be >= 0"):
        forward_macs(config, HeadKind.encoder, 0, -1, 5)
