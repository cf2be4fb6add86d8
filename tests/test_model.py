"""The encoder: presets, named outputs, attention paths agree, padding does not leak."""

import pytest
import torch

from ernie_tiny.model import (ErnieConfig, ErnieForMaskedLM, ErnieForRanking, ErnieModel, PRESETS, build_model,
                              pairwise_ranking_loss)


def make_batch(vocab_size: int, batch: int = 3, length: int = 11) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, vocab_size, (batch, length), generator=generator)
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, length // 2:] = 1
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 7:] = 0
    attention_mask[2, 4:] = 0
    return input_ids, token_type_ids, attention_mask


def test_real_presets_have_the_published_shapes():
    base, tiny = PRESETS["ernie-1.0-base"], PRESETS["ernie-tiny"]
    assert (base.vocab_size, base.hidden_size, base.num_layers, base.num_heads, base.intermediate_size) == (18000, 768, 12, 12, 3072)
    assert (base.max_position_embeddings, base.type_vocab_size, base.hidden_act) == (513, 2, "relu")
    assert (tiny.vocab_size, tiny.hidden_size, tiny.num_layers, tiny.num_heads, tiny.intermediate_size) == (50006, 1024, 3, 16, 4096)
    assert (tiny.max_position_embeddings, tiny.hidden_act) == (600, "relu")


@pytest.mark.parametrize("teacher,student", [("teacher-small", "student-small"), ("teacher-micro", "student-micro")])
def test_scaled_presets_keep_the_real_ratios(teacher, student):
    t, s = PRESETS[teacher], PRESETS[student]
    assert t.num_layers / s.num_layers == 12 / 3
    assert s.hidden_size / t.hidden_size == 1024 / 768
    assert s.num_heads / t.num_heads == 16 / 12
    assert t.intermediate_size == 4 * t.hidden_size and s.intermediate_size == 4 * s.hidden_size


def test_config_validation_and_round_trip():
    with pytest.raises(ValueError, match="not a multiple"):
        ErnieConfig(hidden_size=10, num_heads=3)
    with pytest.raises(ValueError, match="unknown preset"):
        ErnieConfig.from_preset("ernie-huge")
    with pytest.raises(ValueError, match="hidden_act"):
        ErnieConfig(hidden_act="swish")
    config = ErnieConfig.from_preset("teacher-micro", vocab_size=321)
    assert ErnieConfig.from_dict(config.to_dict()) == config
    assert "teacher-micro" in config.describe()
    with pytest.raises(ValueError, match="model.bogus: unknown key"):
        ErnieConfig.from_dict({**config.to_dict(), "bogus": 1})


def test_outputs_are_named_and_complete():
    config = ErnieConfig.from_preset("teacher-micro", vocab_size=100)
    model = ErnieModel(config).eval()
    input_ids, token_type_ids, attention_mask = make_batch(100)
    out = model(input_ids, token_type_ids, attention_mask, output_hidden_states=True, output_attention_scores=True)
    assert out.last_hidden_state.shape == (3, 11, 48)
    assert out.pooled_output.shape == (3, 48)
    assert len(out.hidden_states) == config.num_layers + 1
    assert len(out.attention_scores) == config.num_layers
    assert out.attention_scores[0].shape == (3, config.num_heads, 11, 11)
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)
    plain = model(input_ids, token_type_ids, attention_mask)
    assert plain.hidden_states is None and plain.attention_scores is None


def test_sdpa_path_matches_explicit_scores_path():
    config = ErnieConfig.from_preset("student-micro", vocab_size=100)
    model = ErnieModel(config).eval()
    input_ids, token_type_ids, attention_mask = make_batch(100)
    fast = model(input_ids, token_type_ids, attention_mask)
    explicit = model(input_ids, token_type_ids, attention_mask, output_attention_scores=True)
    assert torch.allclose(fast.last_hidden_state, explicit.last_hidden_state, atol=1e-5)


def test_attention_scores_are_pre_softmax_query_key_products():
    config = ErnieConfig.from_preset("student-micro", vocab_size=100)
    model = ErnieModel(config).eval()
    input_ids, token_type_ids, attention_mask = make_batch(100)
    out = model(input_ids, token_type_ids, attention_mask, output_hidden_states=True, output_attention_scores=True)
    attention = model.layers[0].attention
    x = out.hidden_states[0]
    B, T, H = x.shape
    q = attention.query(x).view(B, T, config.num_heads, config.head_size).transpose(1, 2)
    k = attention.key(x).view(B, T, config.num_heads, config.head_size).transpose(1, 2)
    expected = q @ k.transpose(-2, -1) / config.head_size ** 0.5
    assert torch.allclose(out.attention_scores[0], expected, atol=1e-5)


def test_padding_does_not_change_real_tokens():
    config = ErnieConfig.from_preset("teacher-micro", vocab_size=100)
    model = ErnieModel(config).eval()
    input_ids, token_type_ids, attention_mask = make_batch(100)
    short = model(input_ids[2:3, :4], token_type_ids[2:3, :4], attention_mask[2:3, :4])
    padded = model(input_ids[2:3], token_type_ids[2:3], attention_mask[2:3])
    assert torch.allclose(short.last_hidden_state, padded.last_hidden_state[:, :4], atol=1e-5)
    assert torch.allclose(short.pooled_output, padded.pooled_output, atol=1e-5)


def test_post_layer_norm_block_structure():
    """Each layer output is LayerNorm-ed: zero mean, unit variance per token (post-LN, not pre-LN)."""
    config = ErnieConfig.from_preset("student-micro", vocab_size=100)
    model = ErnieModel(config).eval()
    input_ids, token_type_ids, attention_mask = make_batch(100)
    hidden = model(input_ids, token_type_ids, attention_mask).last_hidden_state
    assert torch.allclose(hidden.mean(-1), torch.zeros(3, 11), atol=1e-4)
    assert torch.allclose(hidden.var(-1, unbiased=False), torch.ones(3, 11), atol=1e-2)


def test_too_long_input_is_a_clear_error():
    config = ErnieConfig.from_preset("student-micro", vocab_size=100)
    with pytest.raises(ValueError, match="exceeds max_position_embeddings 130"):
        ErnieModel(config)(torch.ones(1, 131, dtype=torch.long))


@pytest.mark.parametrize("head,shape", [("sequence_classification", (3, 4)), ("token_classification", (3, 11, 4)),
                                        ("ranking", (3,)), ("masked_lm", (3, 11, 100))])
def test_heads_give_logits_and_a_loss(head, shape):
    config = ErnieConfig.from_preset("student-micro", vocab_size=100)
    model = build_model(config, head, num_labels=4)
    input_ids, token_type_ids, attention_mask = make_batch(100)
    labels = {"sequence_classification": torch.tensor([0, 3, 1]), "ranking": torch.tensor([1, 0, 0]),
              "token_classification": torch.full((3, 11), 2), "masked_lm": torch.full((3, 11), -100)}[head]
    if head == "masked_lm":
        labels[0, 3] = 42
    out = model(input_ids, token_type_ids, attention_mask, labels=labels)
    assert out.logits.shape == shape
    assert out.loss is not None and torch.isfinite(out.loss) and out.loss > 0
    out.loss.backward()


def test_masked_lm_decoder_is_tied_to_word_embeddings():
    model = ErnieForMaskedLM(ErnieConfig.from_preset("student-micro", vocab_size=100))
    assert "decoder.weight" not in dict(model.named_parameters())
    with torch.no_grad():
        model.ernie.embeddings.word_embeddings.weight[7].fill_(0.0)
        model.decoder_bias.zero_()
    logits = model(torch.tensor([[1, 8, 9]])).logits
    assert torch.allclose(logits[..., 7], torch.zeros(1, 3))


def test_pairwise_ranking_loss_values():
    scores = torch.tensor([2.0, 0.0, 1.0, 5.0])
    labels = torch.tensor([1, 0, 0, 1])
    groups = torch.tensor([0, 0, 1, 1])
    # pairs: (0 > 1) margin 2, (3 > 2) margin 4
    expected = (torch.log1p(torch.exp(torch.tensor(-2.0))) + torch.log1p(torch.exp(torch.tensor(-4.0)))) / 2
    assert torch.allclose(pairwise_ranking_loss(scores, labels, groups), expected)
    assert pairwise_ranking_loss(scores, torch.zeros(4, dtype=torch.long), groups) == 0
    model = ErnieForRanking(ErnieConfig.from_preset("student-micro", vocab_size=100))
    input_ids, token_type_ids, attention_mask = make_batch(100, batch=4)
    out = model(input_ids, token_type_ids, attention_mask, labels=labels, group_ids=groups)
    assert out.logits.shape == (4,) and out.loss > 0


def test_padding_bias_is_none_without_padding_and_in_the_matmul_dtype():
    from ernie_tiny.model import compute_dtype, padding_bias

    assert padding_bias(None, torch.float32) is None
    assert padding_bias(torch.ones(2, 5, dtype=torch.long), torch.float32) is None
    _, _, attention_mask = make_batch(100, length=11)
    bias = padding_bias(attention_mask, torch.bfloat16)
    assert bias.shape == (3, 1, 1, 11) and bias.dtype == torch.bfloat16
    assert bias[1, 0, 0, 6] == 0 and bias[1, 0, 0, 7] == torch.finfo(torch.bfloat16).min
    x = torch.zeros(2, 3)
    assert compute_dtype(x) == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert compute_dtype(x) == torch.bfloat16  # an fp32 bias would be cast again in every layer


def test_no_mask_equals_an_all_ones_mask_and_all_padding_rows_stay_finite():
    config = ErnieConfig.from_preset("teacher-micro", vocab_size=100)
    model = ErnieModel(config).eval()
    input_ids, token_type_ids, attention_mask = make_batch(100)
    without = model(input_ids, token_type_ids)
    ones = model(input_ids, token_type_ids, torch.ones_like(input_ids), output_attention_scores=True)
    assert torch.allclose(without.last_hidden_state, ones.last_hidden_state, atol=1e-5)
    attention_mask[0] = 0
    for scores in (False, True):
        out = model(input_ids, token_type_ids, attention_mask, output_attention_scores=scores)
        assert torch.isfinite(out.last_hidden_state).all()


def test_half_precision_autocast_scores_path_matches_sdpa_path():
    config = ErnieConfig.from_preset("student-micro", vocab_size=100)
    model = ErnieModel(config).eval()
    input_ids, token_type_ids, attention_mask = make_batch(100)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = model(input_ids, token_type_ids, attention_mask).last_hidden_state.float()
        explicit = model(input_ids, token_type_ids, attention_mask,
                         output_attention_scores=True).last_hidden_state.float()
    assert torch.allclose(fast, explicit, atol=5e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the aligned bias is for CUDA's memory-efficient kernel")
def test_cuda_bias_rows_are_aligned_for_the_memory_efficient_kernel():
    from ernie_tiny.model import padding_bias

    _, _, attention_mask = make_batch(100, length=11)
    bias = padding_bias(attention_mask.cuda(), torch.float16)
    assert bias.shape == (3, 1, 1, 11) and all(stride % 8 == 0 for stride in bias.stride()[:-1])
    assert torch.equal(bias.cpu(), padding_bias(attention_mask, torch.float16))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="SDPA backend choice is a CUDA matter")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_half_attention_never_runs_cudnn_and_matches_fp32(dtype):
    """cuDNN attention plans per shape (what made fp16 slower than fp32 under dynamic padding)."""
    from torch.profiler import ProfilerActivity, profile

    config = ErnieConfig.from_preset("student-small", vocab_size=100)
    model = ErnieModel(config).eval().cuda()
    input_ids, token_type_ids, attention_mask = (t.cuda() for t in make_batch(100, length=37))
    with torch.no_grad():
        expected = model(input_ids, token_type_ids, attention_mask).last_hidden_state
        model.to(dtype)
        with profile(activities=[ProfilerActivity.CUDA]) as trace:
            got = model(input_ids, token_type_ids, attention_mask).last_hidden_state
            torch.cuda.synchronize()
    kernels = [event.name.lower() for event in trace.events()]
    assert not any("cudnn" in name and "sdpa" in name for name in kernels)
    assert torch.allclose(got.float(), expected, atol=0.1)
