"""Teacher loaders: parity with transformers and Paddle outputs, LoDTensor format, clear errors, convert CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from ernie_tiny.checkpoint import CheckpointError, load_pretrained
from ernie_tiny.commands.teacher import teacher_app
from ernie_tiny.heads import HeadKind
from ernie_tiny.tokenization.char import CharTokenizer
from ernie_tiny.convert.detect import CheckpointFormat, count_parameters, detect_format, load_checkpoint
from ernie_tiny.convert.paddle import LoDTensorError, parse_tensor_desc, read_lod_tensor
from paddle_format import lod_tensor_bytes, write_lod_tensor

transformers = pytest.importorskip("transformers")

FIXTURES = Path(__file__).parent / "fixtures" / "paddle_micro"
TOLERANCE = 1e-4
VOCAB_SIZE = 40


def tiny_hf_config(model_type: str, **overrides):
    common = dict(vocab_size=VOCAB_SIZE, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=24, type_vocab_size=2)
    if model_type == "ernie":  # ERNIE 1.0 style: relu, Paddle's LayerNorm eps
        return transformers.ErnieConfig(**{**common, "hidden_act": "relu", "layer_norm_eps": 1e-5, **overrides})
    return transformers.BertConfig(**{**common, **overrides})


def randomised(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter ~ N(0, 0.3), LayerNorms included, so that a wrong mapping cannot hide."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    return model.eval()


def save_hf(model, directory: Path, safe: bool = True, with_vocab: bool = True) -> Path:
    model.save_pretrained(directory, safe_serialization=safe)
    if with_vocab:
        tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("酒店很干净房间不错服务")
        (directory / "vocab.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    return directory


def padded_batch():
    generator = torch.Generator().manual_seed(7)
    input_ids = torch.randint(5, VOCAB_SIZE, (3, 9), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0
    attention_mask[2, 3:] = 0
    input_ids[attention_mask == 0] = 0
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[0, 5:] = 1
    return input_ids, token_type_ids, attention_mask


def max_diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    if mask is not None:  # compare real tokens only
        a, b = a * mask[..., None], b * mask[..., None]
    return (a - b).abs().max().item()


# ---- Hugging Face parity ---------------------------------------------------------------------------

@pytest.mark.parametrize("model_type, use_task_id, safe", [("ernie", True, True), ("ernie", False, False),
                                                           ("bert", False, True)])
def test_hf_encoder_parity_every_layer(tmp_path, model_type, use_task_id, safe):
    extra = {"use_task_id": True, "task_type_vocab_size": 3} if use_task_id else {}
    reference_cls = transformers.ErnieModel if model_type == "ernie" else transformers.BertModel
    reference = randomised(reference_cls(tiny_hf_config(model_type, **extra)), seed=1)
    save_hf(reference, tmp_path, safe=safe)
    loaded = load_checkpoint(tmp_path)
    assert detect_format(tmp_path) is CheckpointFormat.hf
    assert loaded.config.preset == f"hf:{model_type}" and loaded.config.use_task_id == use_task_id
    assert loaded.config.hidden_act == ("relu" if model_type == "ernie" else "gelu")
    assert loaded.meta.head is HeadKind.encoder and isinstance(loaded.tokenizer, CharTokenizer)
    assert count_parameters(loaded.model) == sum(p.numel() for p in reference.parameters())

    input_ids, token_type_ids, attention_mask = padded_batch()
    task_kwargs = {"task_type_ids": torch.full_like(input_ids, 2)} if use_task_id else {}
    with torch.no_grad():
        theirs = reference(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask,
                           output_hidden_states=True, **task_kwargs)
        ours = loaded.model.eval()(input_ids, token_type_ids, attention_mask, output_hidden_states=True,
                                   **task_kwargs)
    assert len(ours.hidden_states) == len(theirs.hidden_states) == 3
    for layer, (mine, ref) in enumerate(zip(ours.hidden_states, theirs.hidden_states, strict=True)):
        assert max_diff(mine, ref, attention_mask) < TOLERANCE, f"layer {layer}"
    assert max_diff(ours.pooled_output, theirs.pooler_output) < TOLERANCE
    assert theirs.last_hidden_state.abs().max() > 0.5  # the comparison is not between near-zero tensors


@pytest.mark.parametrize("reference_cls, head", [("ErnieForSequenceClassification", HeadKind.sequence_classification),
                                                 ("BertForTokenClassification", HeadKind.token_classification)])
def test_hf_classification_logits_and_labels(tmp_path, reference_cls, head):
    model_type = "ernie" if reference_cls.startswith("Ernie") else "bert"
    config = tiny_hf_config(model_type, num_labels=3, id2label={0: "neg", 1: "neutral", 2: "pos"},
                            label2id={"neg": 0, "neutral": 1, "pos": 2})
    reference = randomised(getattr(transformers, reference_cls)(config), seed=2)
    loaded = load_checkpoint(save_hf(reference, tmp_path))
    assert loaded.meta.head is head and loaded.meta.labels == ["neg", "neutral", "pos"]
    # transformers' token classifier has no pooler; ours keeps a fresh one and says so
    fresh = [] if head is HeadKind.sequence_classification else ["ernie.pooler.weight", "ernie.pooler.bias"]
    assert loaded.meta.extra["initialised"] == fresh
    input_ids, token_type_ids, attention_mask = padded_batch()
    with torch.no_grad():
        theirs = reference(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask).logits
        ours = loaded.model.eval()(input_ids, token_type_ids, attention_mask).logits
    assert ours.shape == theirs.shape == ((3, 3) if head is HeadKind.sequence_classification else (3, 9, 3))
    assert max_diff(ours, theirs) < TOLERANCE


@pytest.mark.parametrize("reference_cls", ["BertForMaskedLM", "BertForPreTraining", "ErnieForMaskedLM"])
def test_hf_masked_lm_logits(tmp_path, reference_cls):
    model_type = "ernie" if reference_cls.startswith("Ernie") else "bert"
    reference = randomised(getattr(transformers, reference_cls)(tiny_hf_config(model_type)), seed=3)
    reference.tie_weights()  # randomising broke nothing, but keep the decoder tied as saved models are
    loaded = load_checkpoint(save_hf(reference, tmp_path, safe=reference_cls != "BertForMaskedLM"))
    assert loaded.meta.head is HeadKind.masked_lm
    # transformers builds *ForMaskedLM without a pooler; ours keeps a fresh one and says so
    expected_fresh = [] if reference_cls == "BertForPreTraining" else ["ernie.pooler.weight", "ernie.pooler.bias"]
    assert loaded.meta.extra["initialised"] == expected_fresh
    input_ids, token_type_ids, attention_mask = padded_batch()
    with torch.no_grad():
        output = reference(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask)
        theirs = output.logits if hasattr(output, "logits") else output.prediction_logits
        ours = loaded.model.eval()(input_ids, token_type_ids, attention_mask).logits
    assert ours.shape == (3, 9, VOCAB_SIZE) and max_diff(ours, theirs, attention_mask) < TOLERANCE


def test_hf_old_style_port_with_gamma_beta_and_tied_decoder(tmp_path):
    """A pre-2019 style pytorch_model.bin: LayerNorm.gamma/beta, decoder weight and bias saved, position_ids."""
    reference = randomised(transformers.BertForPreTraining(tiny_hf_config("bert")), seed=5)
    reference.tie_weights()
    save_hf(reference, tmp_path, safe=True)
    (tmp_path / "model.safetensors").unlink()
    old_style = {}
    for key, tensor in reference.state_dict().items():
        key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        old_style[key] = tensor.clone()
    old_style["bert.embeddings.position_ids"] = torch.arange(24)[None]
    assert "cls.predictions.decoder.weight" in old_style and "cls.predictions.decoder.bias" in old_style
    torch.save(old_style, tmp_path / "pytorch_model.bin")
    loaded = load_checkpoint(tmp_path)
    input_ids, token_type_ids, attention_mask = padded_batch()
    with torch.no_grad():
        theirs = reference(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask)
        ours = loaded.model.eval()(input_ids, token_type_ids, attention_mask)
    assert max_diff(ours.logits, theirs.prediction_logits, attention_mask) < TOLERANCE
    old_style["cls.predictions.decoder.weight"] = old_style["cls.predictions.decoder.weight"] + 1.0  # untied
    torch.save(old_style, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="decoder.weight is not tied to embeddings.word_embeddings.weight"):
        load_checkpoint(tmp_path)


# ---- Hugging Face bad input ------------------------------------------------------------------------

@pytest.fixture
def hf_dir(tmp_path) -> Path:
    return save_hf(randomised(transformers.ErnieModel(tiny_hf_config("ernie")), seed=4), tmp_path / "hf")


def rewrite_weights(directory: Path, edit) -> None:
    state = load_file(str(directory / "model.safetensors"))
    edit(state)
    save_file(state, str(directory / "model.safetensors"))


def test_hf_missing_extra_and_misshaped_keys_are_named(hf_dir):
    rewrite_weights(hf_dir, lambda s: s.pop("encoder.layer.1.output.dense.bias"))
    with pytest.raises(CheckpointError, match=r"model.safetensors: .*missing 1: encoder.layer.1.output.dense.bias"):
        load_checkpoint(hf_dir)
    rewrite_weights(hf_dir, lambda s: s.update({"encoder.layer.1.output.dense.bias": torch.zeros(32),
                                                "encoder.layer.2.output.dense.bias": torch.zeros(32)}))
    with pytest.raises(CheckpointError, match=r"unexpected 1: encoder.layer.2.output.dense.bias"):
        load_checkpoint(hf_dir)
    rewrite_weights(hf_dir, lambda s: (s.pop("encoder.layer.2.output.dense.bias"),
                                       s.update({"pooler.dense.weight": torch.zeros(32, 31)})))
    with pytest.raises(CheckpointError, match=r"pooler.dense.weight: expected \(32, 32\), got \(32, 31\)"):
        load_checkpoint(hf_dir)


def test_hf_bad_config_and_files(hf_dir):
    (hf_dir / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors or pytorch_model.bin"):
        load_checkpoint(hf_dir)
    config = (hf_dir / "config.json").read_text(encoding="utf-8")
    (hf_dir / "config.json").write_text(config.replace('"model_type": "ernie"', '"model_type": "roberta"'),
                                        encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"config.json: model_type 'roberta' is not one of"):
        load_checkpoint(hf_dir)


# ---- Paddle ERNIE 1.0 ----------------------------------------------------------------------------

@pytest.mark.parametrize("fixture", ["pretrain", "classifier"])
def test_paddle_fixture_matches_paddle_outputs(fixture):
    """Weights written by Paddle and outputs computed by Paddle (see fixtures/paddle_micro/make_fixture.py)."""
    directory = FIXTURES / fixture
    expected = np.load(directory / "expected.npz")
    loaded = load_checkpoint(directory)
    assert detect_format(directory) is CheckpointFormat.paddle
    assert loaded.config.preset == "paddle:ernie" and loaded.config.intermediate_size == 32
    assert loaded.tokenizer.token_to_id("酒") == 5  # ERNIE's "token<TAB>id" vocab
    batch = {key: torch.from_numpy(expected[key]) for key in ("input_ids", "token_type_ids", "attention_mask")}
    kwargs = {"task_type_ids": torch.from_numpy(expected["task_type_ids"])} if loaded.config.use_task_id else {}
    with torch.no_grad():
        output = loaded.model.eval()(**batch, output_hidden_states=True, **kwargs)
    mask = batch["attention_mask"]  # ERNIE's bias also masks padded query rows: compare real tokens only
    for layer, hidden in enumerate(output.encoder.hidden_states):
        assert max_diff(hidden, torch.from_numpy(expected[f"hidden_{layer}"]), mask) < TOLERANCE, f"layer {layer}"
    assert max_diff(output.encoder.pooled_output, torch.from_numpy(expected["pooled"])) < TOLERANCE
    logits = torch.from_numpy(expected["logits"])
    if fixture == "pretrain":
        assert loaded.meta.head is HeadKind.masked_lm and loaded.config.use_task_id
        assert max_diff(output.logits, logits, mask) < TOLERANCE
    else:
        assert loaded.meta.head is HeadKind.sequence_classification and output.logits.shape == (2, 3)
        assert max_diff(output.logits, logits) < TOLERANCE


def test_our_lod_tensor_writer_matches_paddles_bytes():
    for path in sorted((FIXTURES / "pretrain" / "params").iterdir()):
        array = read_lod_tensor(path)
        assert lod_tensor_bytes(array) == path.read_bytes(), path.name
    weight = read_lod_tensor(FIXTURES / "pretrain" / "params" / "encoder_layer_0_ffn_fc_0.w_0")
    assert weight.shape == (8, 32) and weight.dtype == np.float32  # Paddle fc: (in, out)


@pytest.mark.parametrize("array", [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([-3, 7], dtype=np.int64),
                                   np.ones((2, 1, 2), dtype=np.float16), np.array(2.5, dtype=np.float64)])
def test_lod_tensor_round_trip(tmp_path, array):
    write_lod_tensor(tmp_path / "t", array)
    again = read_lod_tensor(tmp_path / "t")
    assert again.dtype == array.dtype and again.shape == array.shape and np.array_equal(again, array)


def test_lod_tensor_with_lod_and_packed_dims(tmp_path):
    array = np.arange(4, dtype=np.float32).reshape(2, 2)
    plain = lod_tensor_bytes(array)
    lod = np.array([0, 1, 2], dtype=np.uint64).tobytes()  # one LoD level of size_t offsets
    with_lod = plain[:4] + np.uint64(1).tobytes() + np.uint64(len(lod)).tobytes() + lod + plain[12:]
    (tmp_path / "lod").write_bytes(with_lod)
    assert np.array_equal(read_lod_tensor(tmp_path / "lod"), array)
    assert parse_tensor_desc(bytes([0x08, 0x05, 0x12, 0x02, 0x02, 0x03]), "packed") == (5, [2, 3])


def test_truncated_and_foreign_lod_tensor_files_name_the_file(tmp_path):
    data = (FIXTURES / "pretrain" / "params" / "pooled_fc.w_0").read_bytes()
    (tmp_path / "pooled_fc.w_0").write_bytes(data[:-5])
    with pytest.raises(LoDTensorError, match=r"pooled_fc.w_0: truncated: 64 float32 values of shape \[8, 8\]"):
        read_lod_tensor(tmp_path / "pooled_fc.w_0")
    (tmp_path / "short").write_bytes(data[:10])
    with pytest.raises(LoDTensorError, match=r"short: truncated: the LoD level needs 8 bytes"):
        read_lod_tensor(tmp_path / "short")
    (tmp_path / "foreign").write_bytes(b"\x80\x02}q\x00" + data)  # a pickle, not a LoDTensor
    with pytest.raises(LoDTensorError, match="foreign: LoDTensor version"):
        read_lod_tensor(tmp_path / "foreign")


@pytest.fixture
def paddle_dir(tmp_path) -> Path:
    return Path(shutil.copytree(FIXTURES / "classifier", tmp_path / "paddle"))


def test_paddle_missing_extra_and_misshaped_params_are_named(paddle_dir):
    params = paddle_dir / "params"
    (params / "encoder_layer_1_ffn_fc_1.w_0").unlink()
    write_lod_tensor(params / "encoder_layer_2_ffn_fc_1.w_0", np.zeros((32, 8), dtype=np.float32))
    write_lod_tensor(params / "pooled_fc.b_0", np.zeros(7, dtype=np.float32))
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(paddle_dir)
    message = str(error.value)
    assert f"{params}: parameters do not match" in message
    assert "missing 1: encoder_layer_1_ffn_fc_1.w_0" in message
    assert "unexpected 1: encoder_layer_2_ffn_fc_1.w_0" in message
    assert "pooled_fc.b_0: expected (8,), got (7,)" in message


def test_paddle_truncated_param_and_missing_parts(paddle_dir):
    # Adam moments next to the parameters are training state: skipped, not "unexpected".
    write_lod_tensor(paddle_dir / "params" / "word_embedding_moment1_0", np.zeros((24, 8), dtype=np.float32))
    assert load_checkpoint(paddle_dir).meta.head is HeadKind.sequence_classification
    target = paddle_dir / "params" / "sent_embedding"
    target.write_bytes(target.read_bytes()[:-1])
    with pytest.raises(LoDTensorError, match=r"params/sent_embedding: truncated"):
        load_checkpoint(paddle_dir)
    shutil.rmtree(paddle_dir / "params")
    with pytest.raises(CheckpointError, match=r"params: no such folder"):
        load_checkpoint(paddle_dir)
    (paddle_dir / "ernie_config.json").write_text('{"hidden_size": 8}', encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"ernie_config.json: config lacks 'vocab_size'"):
        load_checkpoint(paddle_dir)


def test_vocab_larger_than_embeddings_is_refused(paddle_dir):
    with (paddle_dir / "vocab.txt").open("a", encoding="utf-8") as f:
        f.write("多\t24\n")
    with pytest.raises(ValueError, match=r"vocab.txt: 25 tokens but the model embeds only 24"):
        load_checkpoint(paddle_dir)


# ---- format detection and the convert command ------------------------------------------------------

def test_detect_format_refuses_other_folders(tmp_path):
    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        detect_format(tmp_path)
    (tmp_path / "config.json").write_text('{"hello": 1}', encoding="utf-8")
    with pytest.raises(CheckpointError, match="neither an ernie-tiny config"):
        detect_format(tmp_path)
    with pytest.raises(CheckpointError, match="no such folder"):
        detect_format(tmp_path / "absent")


def test_convert_paddle_then_reload_ours(tmp_path):
    out = tmp_path / "converted"
    result = CliRunner().invoke(teacher_app, ["convert", str(FIXTURES / "pretrain"), str(out)])
    assert result.exit_code == 0, result.output
    assert "read paddle checkpoint" in result.output
    assert "preset paddle:ernie: 2 layers, hidden 8, 2 heads, FFN 32, vocab 24" in result.output
    assert "head masked_lm" in result.output and "char, 24 tokens" in result.output
    source = load_checkpoint(FIXTURES / "pretrain")
    converted = load_checkpoint(out)
    assert detect_format(out) is CheckpointFormat.ours
    assert f"{count_parameters(source.model):,} parameters" in result.output
    assert converted.config == source.config and converted.tokenizer.vocab == source.tokenizer.vocab
    for key, tensor in source.model.state_dict().items():
        assert torch.equal(tensor, converted.model.state_dict()[key]), key
    assert load_pretrained(out).meta.extra["source_format"] == "paddle"

    again = CliRunner().invoke(teacher_app, ["convert", str(FIXTURES / "pretrain"), str(out)])
    assert again.exit_code == 1 and "exists (pass --overwrite" in again.output


def test_convert_bad_source_is_one_line_error(tmp_path, paddle_dir):
    (paddle_dir / "params" / "pooled_fc.w_0").unlink()
    result = CliRunner().invoke(teacher_app, ["convert", str(paddle_dir), str(tmp_path / "out")])
    assert result.exit_code == 1
    assert result.output.strip().startswith("error: ") and "missing 1: pooled_fc.w_0" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


# ---- teacher finetune --init CKPT --vocab-from-train ------------------------------------------------

def test_vocab_from_train_keeps_pretrained_rows_of_shared_tokens_and_says_how_many(tmp_path):
    from ernie_tiny.tasks import get_task, load_split
    from ernie_tiny.finetune import FinetuneConfig, build_teacher

    task = get_task("reviews")
    train = load_split(task, None, "train")[:60]
    chars = sorted({c for e in train[:20] for c in e.text_a if not c.isspace()})[:200]
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["老字号"]  # one the new vocab lacks
    config = tiny_hf_config("bert", vocab_size=len(tokens), num_labels=2)
    reference = randomised(transformers.BertForSequenceClassification(config), seed=5)
    reference.save_pretrained(tmp_path / "hf")
    (tmp_path / "hf" / "vocab.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    finetune_config = FinetuneConfig(task="reviews", out_dir=str(tmp_path / "run"), init=str(tmp_path / "hf"),
                                     vocab_from_train=True, max_len=16)
    model, tokenizer, source = build_teacher(finetune_config, task, train, None)
    old_rows = reference.bert.embeddings.word_embeddings.weight
    new_rows = model.ernie.embeddings.word_embeddings.weight
    shared = [t for t in tokenizer.vocab if t in tokens]
    assert len(shared) >= 50 and "老字号" not in tokenizer.vocab
    for token in shared:
        assert torch.equal(new_rows[tokenizer.vocab[token]], old_rows[tokens.index(token)]), token
    new_tokens = [t for t in tokenizer.vocab if t not in tokens]
    assert new_tokens and all(new_rows[tokenizer.vocab[t]].abs().max() < 0.2 for t in new_tokens)  # fresh N(0, 0.02)
    assert (f"{len(shared)} of {tokenizer.vocab_size} embedding rows kept from the checkpoint, "
            f"{len(new_tokens)} new") in source
    # every other tensor is the checkpoint's
    assert torch.equal(model.ernie.layers[1].ffn.fc_out.weight, reference.bert.encoder.layer[1].output.dense.weight)


def test_vocab_from_train_without_a_checkpoint_vocab_says_every_row_is_new(tmp_path):
    from ernie_tiny.tasks import get_task, load_split
    from ernie_tiny.finetune import FinetuneConfig, build_teacher

    task = get_task("reviews")
    reference = randomised(transformers.BertModel(tiny_hf_config("bert")), seed=6)
    save_hf(reference, tmp_path / "hf", with_vocab=False)
    finetune_config = FinetuneConfig(task="reviews", out_dir=str(tmp_path / "run"), init=str(tmp_path / "hf"),
                                     vocab_from_train=True, max_len=16)
    _, tokenizer, source = build_teacher(finetune_config, task, load_split(task, None, "train")[:30], None)
    assert (f"0 of {tokenizer.vocab_size} embedding rows kept from the checkpoint, {tokenizer.vocab_size} new "
            "(the checkpoint has no vocab.txt to match)") in source
