"""``export --format hf``: folders transformers loads without custom code, with parity to our model."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from ernie_tiny.checkpoint import CheckpointError, save_pretrained
from ernie_tiny.commands.export import export as export_command
from ernie_tiny.convert.detect import load_checkpoint
from ernie_tiny.tasks import Example, get_task, load_split
from ernie_tiny.deploy.hf_export import HF_PARITY_FILE, HfExportError, export_hf
from ernie_tiny.model import ErnieConfig, build_model
from ernie_tiny.tokenization.batching import pad_encodings
from ernie_tiny.tokenization.char import CharTokenizer
from ernie_tiny.tokenization.load import load_tokenizer

from release_fixture import build_release

transformers = pytest.importorskip("transformers")
PARITY = 1e-5


def randomised(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter ~ N(0, 0.1), LayerNorms and biases too, so that a wrong key cannot hide."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def reviews():
    return load_split(get_task("reviews"), None, "dev")[:48]


@pytest.fixture(scope="module")
def char_tokenizer():
    return CharTokenizer.from_texts([e.text_a for e in load_split(get_task("reviews"), None, "train")[:400]])


def char_checkpoint(folder, tokenizer, head="sequence_classification", labels=("negative", "positive"),
                    task="reviews", use_task_id=False, seed=0):
    config = ErnieConfig.from_preset("student-micro", vocab_size=tokenizer.vocab_size, use_task_id=use_task_id)
    model = randomised(build_model(config, head, len(labels)), seed)
    save_pretrained(model, folder, tokenizer, task, list(labels))
    return model


def hf_inputs(tokenizer, texts):
    batch = pad_encodings(tokenizer.encode_batch(texts, max_len=64), pad_id=tokenizer.pad_id)
    return batch, dict(input_ids=batch.input_ids, token_type_ids=batch.token_type_ids,
                       attention_mask=batch.attention_mask)


def test_char_classifier_loads_with_auto_classes_and_matches_ours(tmp_path, reviews, char_tokenizer):
    model = char_checkpoint(tmp_path / "ckpt", char_tokenizer)
    result = export_hf(tmp_path / "ckpt", tmp_path / "hf", reviews)
    assert result.architecture == "BertForSequenceClassification"
    assert result.parity["max_abs_diff"] < PARITY
    assert json.loads((tmp_path / "hf" / HF_PARITY_FILE).read_text())["examples"] == len(reviews)
    assert {p.name for p in (tmp_path / "hf").iterdir()} >= {"config.json", "model.safetensors", "vocab.txt",
                                                              "tokenizer_config.json"}
    # the README's three lines
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    hf_model = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf").eval()
    texts = [e.text_a for e in reviews]
    logits = hf_model(**tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")).logits
    batch, _ = hf_inputs(char_tokenizer, texts)
    with torch.no_grad():
        ours = model(batch.input_ids, batch.token_type_ids, batch.attention_mask).logits
    assert type(hf_model).__name__ == "BertForSequenceClassification"
    assert hf_model.config.id2label == {0: "negative", 1: "positive"}
    assert (logits - ours).abs().max().item() < PARITY and ours.abs().max() > 0.05
    # BertTokenizer on the exported vocab.txt gives our char tokenizer's ids
    for text in texts + ["Hello WORLD café 123", "房间很干净！！", "ｆｕｌｌ ｗｉｄｔｈ ａｂｃ"]:
        assert tokenizer(text)["input_ids"] == char_tokenizer.encode(text, max_len=4096).input_ids, text
    # the encoder alone: AutoModel gives BertModel, hidden states equal ours
    encoder = transformers.AutoModel.from_pretrained(tmp_path / "hf").eval()
    assert type(encoder).__name__ == "BertModel"


@pytest.mark.parametrize("head, labels, architecture", [
    ("encoder", (), "BertModel"),
    ("token_classification", ("O", "B-LOC", "I-LOC"), "BertForTokenClassification"),
    ("ranking", ("0", "1"), "BertForSequenceClassification"),
    ("masked_lm", (), "BertForMaskedLM"),
])
def test_every_head_has_parity(tmp_path, reviews, char_tokenizer, head, labels, architecture):
    model = char_checkpoint(tmp_path / "ckpt", char_tokenizer, head=head, labels=labels,
                            task={"token_classification": "msra-ner", "ranking": "nlpcc-dbqa"}.get(head))
    result = export_hf(tmp_path / "ckpt", tmp_path / "hf", reviews[:16])
    assert result.architecture == architecture and result.parity["max_abs_diff"] < PARITY
    hf_model = getattr(transformers, architecture).from_pretrained(tmp_path / "hf").eval()
    batch, inputs = hf_inputs(char_tokenizer, [e.text_a for e in reviews[:8]])
    with torch.no_grad():
        theirs, ours = hf_model(**inputs), model(batch.input_ids, batch.token_type_ids, batch.attention_mask)
    mask = batch.attention_mask.bool()
    if head == "encoder":
        assert (theirs.last_hidden_state[mask] - ours.last_hidden_state[mask]).abs().max() < PARITY
        assert (theirs.pooler_output - ours.pooled_output).abs().max() < PARITY
    else:
        assert (theirs.logits.reshape(ours.logits.shape) - ours.logits).abs().max() < PARITY


def test_task_type_embeddings_export_as_ernie_model(tmp_path, reviews, char_tokenizer):
    char_checkpoint(tmp_path / "ckpt", char_tokenizer, use_task_id=True)
    result = export_hf(tmp_path / "ckpt", tmp_path / "hf", reviews[:16])
    assert result.architecture == "ErnieForSequenceClassification" and result.parity["max_abs_diff"] < PARITY
    assert type(transformers.AutoModel.from_pretrained(tmp_path / "hf")).__name__ == "ErnieModel"


def test_subword_release_student_exports_with_its_own_tokenizer_files(tmp_path, reviews):
    build_release(tmp_path / "ernie_tiny")
    release = load_checkpoint(tmp_path / "ernie_tiny")
    student = build_model(release.config, "sequence_classification", 2)
    student.ernie.load_state_dict(release.model.ernie.state_dict())
    save_pretrained(student, tmp_path / "student", release.tokenizer, "reviews", ["negative", "positive"])
    result = export_hf(tmp_path / "student", tmp_path / "hf", reviews)
    assert result.parity["max_abs_diff"] < PARITY
    encoder = transformers.AutoModel.from_pretrained(tmp_path / "hf").eval()
    # our tokenizer reads the exported folder; its ids feed the transformers model
    tokenizer = load_tokenizer(tmp_path / "hf")
    texts = [e.text_a for e in reviews[:8]]
    assert [e.input_ids for e in tokenizer.encode_batch(texts)] == [
        e.input_ids for e in release.tokenizer.encode_batch(texts)]
    batch, inputs = hf_inputs(tokenizer, texts)
    with torch.no_grad():
        theirs = encoder(**inputs, output_hidden_states=True)
        ours = student.eval().ernie(batch.input_ids, batch.token_type_ids, batch.attention_mask,
                                    output_hidden_states=True)
    mask = batch.attention_mask.bool()
    for layer, (mine, ref) in enumerate(zip(ours.hidden_states, theirs.hidden_states, strict=True)):
        assert (mine[mask] - ref[mask]).abs().max() < PARITY, layer
    # no stock transformers tokenizer reproduces the subword ids: AutoTokenizer refuses instead of guessing
    config = json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == "ErnieTinySubwordTokenizer" and config["kind"] == "subword"
    with pytest.raises(Exception):
        transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    check_subword_hf_tokenizer(tmp_path / "hf", release.tokenizer, reviews)


def check_subword_hf_tokenizer(directory, ours, reviews):
    """The package's transformers tokenizer gives our ids, type ids and mask, for single texts and pairs."""
    from ernie_tiny.deploy.hf_tokenizer import ErnieTinySubwordTokenizer

    hf = ErnieTinySubwordTokenizer.from_pretrained(directory)
    texts = [e.text_a for e in reviews[:24]]
    pairs = list(zip(texts[:12], texts[12:]))
    for encoded, expected in zip(hf(texts)["input_ids"], ours.encode_batch(texts, max_len=10 ** 6)):
        assert encoded == expected.input_ids
    got = hf([a for a, _ in pairs], [b for _, b in pairs])
    for ids, types, expected in zip(got["input_ids"], got["token_type_ids"],
                                    ours.encode_batch(pairs, max_len=10 ** 6)):
        assert ids == expected.input_ids and types == expected.token_type_ids
    padded = hf(texts[:4], padding=True, return_tensors="pt")
    assert padded["attention_mask"].sum(dim=1).tolist() == [len(ours.encode(t, max_len=10 ** 6)) for t in texts[:4]]


def test_own_subword_student_tokenizes_through_transformers(tmp_path, reviews):
    from ernie_tiny.tokenization.subword import train_subword_tokenizer

    tokenizer_dir = tmp_path / "tok"
    train_subword_tokenizer([e.text_a for e in reviews[:300]], tokenizer_dir, vocab_size=1500,
                            character_coverage=0.9995)
    ours = load_tokenizer(tokenizer_dir)
    config = ErnieConfig.from_preset("student-micro", vocab_size=ours.vocab_size, pad_token_id=ours.pad_id)
    save_pretrained(build_model(config, "sequence_classification", 2), tmp_path / "student", ours, "reviews",
                    ["negative", "positive"])
    export_hf(tmp_path / "student", tmp_path / "hf", reviews)
    check_subword_hf_tokenizer(tmp_path / "hf", ours, reviews)
    # the folder's auto_map: AutoTokenizer (trusting the folder's one-line module) loads ErnieTinySubwordTokenizer
    auto = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf", trust_remote_code=True)
    texts = [e.text_a for e in reviews[:8]]
    assert type(auto).__name__ == "ErnieTinySubwordTokenizer"
    assert auto(texts)["input_ids"] == [e.input_ids for e in ours.encode_batch(texts, max_len=10 ** 6)]
    module = (tmp_path / "hf" / "tokenization_ernie_tiny.py").read_text(encoding="utf-8")
    assert "from ernie_tiny.deploy.hf_tokenizer import ErnieTinySubwordTokenizer" in module


def test_export_cli_format_hf(tmp_path, char_tokenizer):
    char_checkpoint(tmp_path / "ckpt", char_tokenizer)
    runner = CliRunner()
    import typer

    app = typer.Typer()
    app.command()(export_command)
    result = runner.invoke(app, ["--model", str(tmp_path / "ckpt"), "--out", str(tmp_path / "hf"), "--format", "hf",
                                 "--parity-examples", "16"])
    assert result.exit_code == 0, result.output
    assert "architecture: BertForSequenceClassification" in result.output
    assert "parity vs transformers (logits): max |diff|" in result.output and "on 16 texts" in result.output
    result = runner.invoke(app, ["--model", str(tmp_path / "ckpt"), "--out", str(tmp_path / "hf8"), "--format", "hf",
                                 "--quantize", "int8"])
    assert result.exit_code == 1 and "--format hf writes fp32 weights" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "hf8").exists()


def test_export_refuses_a_config_that_lost_a_model_key(tmp_path, char_tokenizer):
    # the issue: a config.json without num_heads exported "successfully" as a 12-head model
    char_checkpoint(tmp_path / "ckpt", char_tokenizer)
    path = tmp_path / "ckpt" / "config.json"
    payload = json.loads(path.read_text(encoding="utf-8"))
    del payload["model"]["num_heads"]
    path.write_text(json.dumps(payload), encoding="utf-8")
    with pytest.raises(CheckpointError, match="config.json: model.num_heads: missing"):
        export_hf(tmp_path / "ckpt", tmp_path / "hf", [Example("房间很干净", None, 0)])
    assert not (tmp_path / "hf").exists()


def test_parity_failure_leaves_no_folder(tmp_path, reviews, char_tokenizer):
    char_checkpoint(tmp_path / "ckpt", char_tokenizer)
    with pytest.raises(HfExportError, match="transformers differs from ours"):
        export_hf(tmp_path / "ckpt", tmp_path / "hf", reviews[:8], tolerance=-1.0)
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize("max_len_option", [[], ["--max-len", "64"], ["--max-len", "500"]])
def test_a_model_of_64_positions_exports_with_parity_on_long_texts(tmp_path, char_tokenizer, max_len_option):
    """Parity runs at min(--max-len, positions), like the ONNX export (it ran 128 tokens on 64 positions)."""
    config = ErnieConfig.from_preset("student-micro", vocab_size=char_tokenizer.vocab_size,
                                     max_position_embeddings=64)
    save_pretrained(randomised(build_model(config, "sequence_classification", 2), 0), tmp_path / "ckpt",
                    char_tokenizer, "reviews", ["negative", "positive"])
    texts = tmp_path / "long.txt"
    texts.write_text("房间很干净，服务也很周到" * 20 + "\n" + "太吵了\n", encoding="utf-8")
    import typer

    app = typer.Typer()
    app.command()(export_command)
    result = CliRunner().invoke(app, ["--model", str(tmp_path / "ckpt"), "--out", str(tmp_path / "hf"), "--format",
                                      "hf", "--parity-file", str(texts), *max_len_option])
    assert result.exit_code == 0, result.output
    parity = json.loads((tmp_path / "hf" / HF_PARITY_FILE).read_text(encoding="utf-8"))
    assert parity["examples"] == 2 and parity["max_abs_diff"] < PARITY


def test_the_weights_file_gets_the_umask_mode(tmp_path, char_tokenizer):
    import os
    import stat

    char_checkpoint(tmp_path / "ckpt", char_tokenizer)
    previous = os.umask(0o022)
    try:
        export_hf(tmp_path / "ckpt", tmp_path / "hf")
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "hf").iterdir()}
    assert modes["model.safetensors"] == 0o644 and set(modes.values()) == {0o644}
