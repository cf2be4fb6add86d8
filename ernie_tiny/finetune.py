"""Fine-tune the char-level teacher on a task: build or load it, train, keep the best checkpoint.

    FinetuneConfig -> prepare() (data, tokenizer, model) -> train_loop() -> best/ + metrics.json

``--preset`` builds a randomly initialised teacher (no pretrained ERNIE weights exist
offline) whose char vocabulary comes from the task's train texts; ``--init`` starts
from a checkpoint and swaps the head when the task's head or labels differ.

Files in ``out_dir``: ``best/`` (checkpoint folder of the best dev step), ``last.pt``
(resumable training state), ``tokenizer/`` (the run's vocabulary, reused on resume),
``metrics.jsonl`` / ``metrics.csv`` / ``loss_curve.png`` and ``metrics.json``
(dev and test metrics of the best checkpoint, preset, steps, wall time).

Example::

    config = FinetuneConfig(task="reviews", out_dir="runs/teacher", preset="teacher-small",
                            max_len=64, optim=OptimConfig(lr=5e-4, max_steps=600, batch_size=32))
    result = finetune(config)
    result.test["accuracy"]
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import torch
from rich.console import Console
from torch import nn

from ernie_tiny.checkpoint import LoadedCheckpoint, load_pretrained, save_pretrained
from ernie_tiny.tokenization.encoding import Tokenizer
from ernie_tiny.io_utils import atomic_dir, atomic_write_json
from ernie_tiny.model import PRESETS, ErnieConfig, build_model, encoder_of
from ernie_tiny.data.task_batches import collate
from ernie_tiny.data.tasks import (EncodedSplit, Example, TaskSpec, encode_examples, evaluate, get_task, load_splits,
                              predictions_from_outputs)
from ernie_tiny.tokenization.char import CharTokenizer
from ernie_tiny.convert.detect import load_teacher
from ernie_tiny.tokenization.load import load_tokenizer
from ernie_tiny.training.data_order import batch_for_step
from ernie_tiny.training.inference import predict
from ernie_tiny.training.logging import MetricsLog, format_losses, make_progress, plot_loss_curves
from ernie_tiny.training.schedule import OptimConfig, build_optimizer, get_lr, set_seed
from ernie_tiny.training.state import TrainingDivergedError, load_training_state, plain, save_training_state

LAST_STATE = "last.pt"
BEST_DIR = "best"
TOKENIZER_DIR = "tokenizer"
# Config fields a resumed run may change: they do not alter the trained weights.
RESUMABLE_CHANGES = {"resume", "overwrite", "out_dir", "device", "eval_batch_size"}
RESUMABLE_OPTIM_CHANGES = {"eval_every", "save_every", "log_every"}


def default_lr(from_checkpoint: bool) -> float:
    """Peak learning rate when none is given: small for a pretrained start, larger from scratch.

    From scratch, teacher-small on reviews (max_len 64, batch 32, 300 steps) reached dev
    accuracy 0.779 at 3e-4, 0.744 at 5e-4, and stayed at the majority class through step 150 at 1e-3.
    """
    return 5e-5 if from_checkpoint else 3e-4


@dataclass
class FinetuneConfig:
    task: str  # a name in ernie_tiny.data.tasks.TASKS
    out_dir: str
    preset: str | None = None  # random-init teacher of this ErnieConfig preset (vocab from the train texts)
    init: str | None = None  # or: start from this checkpoint
    data_dir: str | None = None  # folder of train/dev/test.tsv; None only for embedded tasks
    max_len: int = 128  # tokens per example, [CLS]/[SEP] included; longer texts are truncated and counted
    vocab_from_train: bool = False  # with --init: new char vocab from the train texts, known rows kept
    vocab_min_freq: int = 1  # chars seen fewer times in train become [UNK]
    device: str = "cpu"
    eval_batch_size: int = 64
    limit: int | None = None  # use only the first N examples of each split (quick runs, smoke tests)
    resume: bool = False  # continue from out_dir/last.pt
    overwrite: bool = False  # start over even though out_dir holds an earlier run's last.pt
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        if self.resume and self.overwrite:
            raise ValueError("--resume and --overwrite exclude each other")
        if (self.preset is None) == (self.init is None):
            raise ValueError("give exactly one of --preset (random init) and --init (a checkpoint)")
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; known presets: {', '.join(PRESETS)}")
        task = get_task(self.task)
        if self.data_dir is None and not task.embedded:
            raise ValueError(f"task {task.name} needs --data-dir (a folder with train.tsv, dev.tsv, test.tsv)")
        if self.max_len < 8:
            raise ValueError(f"max_len must be >= 8, got {self.max_len}")
        if self.vocab_min_freq < 1 or self.eval_batch_size < 1 or (self.limit is not None and self.limit < 1):
            raise ValueError("vocab_min_freq, eval_batch_size and limit must be >= 1")

    @classmethod
    def from_dict(cls, values: dict) -> "FinetuneConfig":
        return cls(**{**values, "optim": OptimConfig(**values["optim"])})


@dataclass
class Prepared:
    task: TaskSpec
    examples: dict[str, list[Example]]  # train, dev and (when its file exists) test
    encoded: dict[str, EncodedSplit]
    model: nn.Module
    tokenizer: Tokenizer
    source: str  # one line: which preset / checkpoint the teacher came from


@dataclass
class TrainOutcome:
    model: nn.Module  # weights after the last step (the best ones are in out_dir/best)
    steps: int
    best_step: int
    best_dev: dict[str, float]
    train_seconds: float  # summed over resumed segments


@dataclass
class FinetuneResult:
    out_dir: Path
    best_dir: Path
    source: str
    steps: int
    best_step: int
    dev: dict[str, float]
    test: dict[str, float] | None  # None when the task has no test.tsv
    train_seconds: float
    truncated: dict[str, int]


# ---- building the teacher -------------------------------------------------------------------------

def texts_of(examples: list[Example]) -> list[str]:
    return [text for e in examples for text in (e.text_a, e.text_b) if text]


def with_task_head(loaded: LoadedCheckpoint, task: TaskSpec, seed: int) -> tuple[nn.Module, str]:
    """The loaded model if its head and labels fit the task, else its encoder under a new task head."""
    if loaded.meta.head is task.head and list(loaded.meta.labels) == list(task.labels):
        return loaded.model, "head kept"
    set_seed(seed)
    model = build_model(loaded.config, task.head, task.num_labels)
    model.ernie.load_state_dict(encoder_of(loaded.model).state_dict())
    old_head = f"{loaded.meta.head.value} {loaded.meta.labels}"
    return model, f"head {old_head} replaced by {task.head.value} {list(task.labels)}"


def with_new_vocab(model: nn.Module, old: Tokenizer | None, new: CharTokenizer, seed: int) -> nn.Module:
    """The model rebuilt for ``new``'s vocabulary: every other tensor kept, embedding rows of known tokens copied."""
    config = replace(encoder_of(model).config, vocab_size=new.vocab_size, pad_token_id=new.pad_id)
    set_seed(seed)
    rebuilt = build_model(config, getattr(model, "head_kind"), getattr(model, "num_labels"))
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("word_embeddings.weight")}
    rebuilt.load_state_dict(state, strict=False)
    old_vocab = getattr(old, "vocab", {})
    old_rows = encoder_of(model).embeddings.word_embeddings.weight.detach()
    new_rows = encoder_of(rebuilt).embeddings.word_embeddings.weight.detach()
    for token, index in new.vocab.items():
        if token in old_vocab:
            new_rows[index] = old_rows[old_vocab[token]]
    return rebuilt


def build_teacher(config: FinetuneConfig, task: TaskSpec, train: list[Example],
                  tokenizer: Tokenizer | None) -> tuple[nn.Module, Tokenizer, str]:
    """Model, tokenizer and a one-line description; ``tokenizer`` is the resumed run's, if any."""
    seed = config.optim.seed
    if config.preset is not None:
        tokenizer = tokenizer or CharTokenizer.from_texts(texts_of(train), min_freq=config.vocab_min_freq)
        model_config = ErnieConfig.from_preset(config.preset, vocab_size=tokenizer.vocab_size,
                                               pad_token_id=tokenizer.pad_id)
        set_seed(seed)
        model = build_model(model_config, task.head, task.num_labels)
        source = f"{model_config.describe()}, random init, char vocab from {task.name} train"
    else:
        loaded = load_teacher(config.init)  # ours, Hugging Face or Paddle layout
        model, head_note = with_task_head(loaded, task, seed)
        source = f"{loaded.config.describe()}, from {config.init} ({head_note})"
        if config.vocab_from_train or loaded.tokenizer is None:
            if not config.vocab_from_train:
                raise ValueError(f"{config.init}: checkpoint has no tokenizer files; add --vocab-from-train")
            tokenizer = tokenizer or CharTokenizer.from_texts(texts_of(train), min_freq=config.vocab_min_freq)
            model = with_new_vocab(model, loaded.tokenizer, tokenizer, seed)
            source += f", char vocab rebuilt from {task.name} train"
        else:
            tokenizer = loaded.tokenizer
    limit = encoder_of(model).config.max_position_embeddings
    if config.max_len > limit:
        raise ValueError(f"max_len {config.max_len} exceeds the model's max_position_embeddings {limit}")
    return model, tokenizer, source


def prepare(config: FinetuneConfig, console: Console) -> Prepared:
    """Read the task's splits, build the teacher and its tokenizer, encode every split."""
    task = get_task(config.task)
    examples = load_splits(task, config.data_dir, config.limit)  # test is optional
    resumed_tokenizer_dir = Path(config.out_dir) / TOKENIZER_DIR
    tokenizer = load_tokenizer(resumed_tokenizer_dir) if config.resume and resumed_tokenizer_dir.is_dir() else None
    model, tokenizer, source = build_teacher(config, task, examples["train"], tokenizer)
    encoded = {split: encode_examples(rows, tokenizer, config.max_len) for split, rows in examples.items()}
    console.print(f"teacher: {source}")
    console.print("examples: " + ", ".join(f"{s} {len(rows)} ({encoded[s].truncated} truncated to {config.max_len} "
                                            f"tokens)" for s, rows in examples.items()))
    return Prepared(task, examples, encoded, model, tokenizer, source)


# ---- training ---------------------------------------------------------------------------------------

def evaluate_model(model: nn.Module, prepared: Prepared, split: str, config: FinetuneConfig) -> dict[str, float]:
    collate_fn = partial(collate, prepared.task, pad_id=prepared.tokenizer.pad_id)
    outputs = predict(model, prepared.encoded[split].items, collate_fn, config.eval_batch_size, config.device)
    predictions = predictions_from_outputs(prepared.task, outputs, prepared.encoded[split], prepared.examples[split])
    return evaluate(prepared.task, predictions, prepared.examples[split])


def check_resumable(saved: dict, config: FinetuneConfig, path: Path) -> None:
    """Refuse to resume a run whose saved config differs in anything that changes the weights."""
    current = plain(config)
    changed = [k for k in current if k not in RESUMABLE_CHANGES | {"optim"} and saved.get(k) != current[k]]
    changed += [f"optim.{k}" for k in current["optim"]
                if k not in RESUMABLE_OPTIM_CHANGES and saved.get("optim", {}).get(k) != current["optim"][k]]
    if changed:
        raise ValueError(f"{path}: cannot resume: the run was started with different "
                         + ", ".join(changed) + " (same options, or a new --out)")


def train_loop(prepared: Prepared, config: FinetuneConfig, console: Console,
               after_step: Callable[[int], None] | None = None) -> TrainOutcome:
    """Train ``prepared.model``: schedule, forward, loss, backward, clip, step, log, evaluate, checkpoint.

    ``after_step(done_steps)`` runs after each step (tests raise from it to simulate a crash).
    """
    model, task, optim = prepared.model.to(config.device), prepared.task, config.optim
    out_dir = Path(config.out_dir)
    state_path = out_dir / LAST_STATE
    optimizer = build_optimizer(model, optim.lr, optim.weight_decay)
    start, best, train_seconds = 0, {"metric": -math.inf, "step": 0, "dev": {}}, 0.0
    window_loss, window_steps = 0.0, 0  # loss summed since the last metrics.jsonl line
    if config.resume:
        state = load_training_state(state_path, model, optimizer)  # restores the RNGs too
        check_resumable(state.config, config, state_path)
        start, best, train_seconds = state.step, state.extra["best"], state.extra["train_seconds"]
        window_loss, window_steps = state.extra["window_loss"], state.extra["window_steps"]
        console.print(f"resumed from {state_path} at step {start}")
    else:
        set_seed(optim.seed)  # dropout masks follow from the seed, as they will after a resume
    log = MetricsLog(out_dir, resume_step=start if config.resume else None)
    collate_fn = partial(collate, task, pad_id=prepared.tokenizer.pad_id)
    train_items = prepared.encoded["train"].items
    model.train()
    window_examples, window_start = 0, time.perf_counter()
    segment_start = time.perf_counter()
    with make_progress(console) as progress:
        bar = progress.add_task(f"fine-tune {task.name}", total=optim.max_steps, completed=start, speed="", losses="")
        for step in range(start, optim.max_steps):
            lr = get_lr(step, optim.max_steps, optim.lr, optim.warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            # The batch is a pure function of (seed, step): a resumed run sees the same data order.
            batch = collate_fn(batch_for_step(train_items, step, optim.batch_size, optim.seed)).to(config.device)
            loss = model(**batch.model_inputs()).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip or math.inf)
            if not (torch.isfinite(loss) and torch.isfinite(grad_norm)):
                raise TrainingDivergedError(f"step {step + 1}: loss {loss.item()}, gradient norm {grad_norm.item()} "
                                            f"at lr {lr:.2e}; lower --lr or check the data")
            optimizer.step()
            done = step + 1
            window_loss, window_steps = window_loss + loss.item(), window_steps + 1
            window_examples += len(batch.labels)
            speed = window_examples / max(time.perf_counter() - window_start, 1e-9)
            progress.update(bar, advance=1, speed=f"{speed:.0f} ex/s", losses=format_losses({"loss": loss.item()}))
            if done % optim.log_every == 0:
                log.log(done, "train", loss=window_loss / window_steps, lr=lr, grad_norm=grad_norm.item(),
                        examples_per_s=speed)
                window_loss, window_steps, window_examples, window_start = 0.0, 0, 0, time.perf_counter()
            if done % optim.eval_every == 0 or done == optim.max_steps:
                dev = evaluate_model(model, prepared, "dev", config)
                log.log(done, "dev", **dev)
                log.write_csv()
                console.print(f"step {done}: dev " + format_losses(dev))
                if dev[task.main_metric] > best["metric"]:  # strictly better: ties keep the earlier step
                    best = {"metric": dev[task.main_metric], "step": done, "dev": dev}
                    save_pretrained(model, out_dir / BEST_DIR, prepared.tokenizer, task.name, list(task.labels),
                                    extra={"step": done, "dev": dev, "source": prepared.source,
                                           "finetune_config": plain(config)})
            if done % optim.save_every == 0 or done == optim.max_steps:
                elapsed = train_seconds + time.perf_counter() - segment_start
                save_training_state(state_path, model, optimizer, done, config=config,
                                    extra={"best": best, "train_seconds": elapsed, "window_loss": window_loss,
                                           "window_steps": window_steps})
            if after_step is not None:
                after_step(done)
    log.write_csv()
    return TrainOutcome(model, optim.max_steps, best["step"], best["dev"],
                        train_seconds + time.perf_counter() - segment_start)


def finetune(config: FinetuneConfig, console: Console | None = None,
             after_step: Callable[[int], None] | None = None) -> FinetuneResult:
    """Run a whole fine-tuning: prepare, train, then score the best checkpoint on dev and test."""
    console = console or Console()
    out_dir = Path(config.out_dir)
    if not config.resume and not config.overwrite and (out_dir / LAST_STATE).exists():
        raise ValueError(f"{out_dir / LAST_STATE} exists: add --resume to continue that run, --overwrite to start "
                         "over, or choose a new --out")
    prepared = prepare(config, console)
    if not config.resume:
        with atomic_dir(out_dir / TOKENIZER_DIR) as tmp:
            prepared.tokenizer.save(str(tmp))
    outcome = train_loop(prepared, config, console, after_step)
    best = load_pretrained(out_dir / BEST_DIR)
    best.model.to(config.device)
    dev = evaluate_model(best.model, prepared, "dev", config)
    test = evaluate_model(best.model, prepared, "test", config) if "test" in prepared.examples else None
    truncated = {split: encoded.truncated for split, encoded in prepared.encoded.items()}
    result = FinetuneResult(out_dir, out_dir / BEST_DIR, prepared.source, outcome.steps, outcome.best_step,
                            dev, test, outcome.train_seconds, truncated)
    atomic_write_json(out_dir / "metrics.json", {
        "task": prepared.task.name, "main_metric": prepared.task.main_metric, "preset": config.preset,
        "init": config.init, "source": prepared.source, "steps": result.steps, "best_step": result.best_step,
        "dev": dev, "test": test, "train_seconds": round(result.train_seconds, 1),
        "examples": {split: len(rows) for split, rows in prepared.examples.items()}, "truncated": truncated,
        "config": plain(config)})
    plot_loss_curves(out_dir / "metrics.jsonl", out_dir / "loss_curve.png")
    console.print(f"best step {result.best_step}: dev {format_losses(dev)}"
                  + (f"; test {format_losses(test)}" if test else "") + f"; {out_dir / BEST_DIR}")
    return result
