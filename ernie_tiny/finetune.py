"""Fine-tune the char-level teacher on a task: build or load it, train, keep the best checkpoint.

    FinetuneConfig -> prepare() (data, tokenizer, model) -> training.loop.train() -> best/ + metrics.json

``--preset`` builds a randomly initialised teacher (no pretrained ERNIE weights exist
offline) whose char vocabulary comes from the task's train texts; ``--init`` starts
from a checkpoint and swaps the head when the task's head or labels differ.

Batches: ``batch_order`` auto takes length buckets on CUDA (each batch holds examples of similar
length, so it pads little; same examples per epoch) and the shuffled order on CPU; the order a
run started with is kept in ``last.pt``, so ``--resume`` sees the same batches on any device.

Files in ``out_dir``: ``best/`` (checkpoint folder of the best dev step), ``last.pt``
(resumable training state), ``tokenizer/`` (the run's vocabulary, reused on resume),
``metrics.jsonl`` / ``metrics.csv`` / ``loss_curve.png`` and ``metrics.json``
(dev and test metrics of the best checkpoint, preset, steps, wall time).

Example::

    config = FinetuneConfig(task="reviews", out_dir="runs/teacher", preset="teacher-small",
                            max_len=64, max_steps=600, optim=OptimConfig(lr=5e-4, batch_size=32))
    result = finetune(config)
    result.test["accuracy"]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.console import Console
from torch import nn

from ernie_tiny.checkpoint import LoadedCheckpoint, load_pretrained, save_pretrained
from ernie_tiny.convert.detect import load_checkpoint
from ernie_tiny.tasks.batches import collate
from ernie_tiny.tasks import EncodedSplit, Example, TaskSpec, data_name, encode_examples, get_task, load_splits
from ernie_tiny.io_utils import atomic_dir
from ernie_tiny.model import PRESETS, ErnieConfig, build_model, encoder_of
from ernie_tiny.tokenization.char import CharTokenizer
from ernie_tiny.tokenization.encoding import Tokenizer
from ernie_tiny.tokenization.load import load_tokenizer
from ernie_tiny.flops import pass_flops
from ernie_tiny.training.data_order import BatchOrder, batch_for_step, bucketed_batch_for_step
from ernie_tiny.training.distributed import DistributedContext, barrier, run_in_process_group
from ernie_tiny.tasks.evaluation import SplitEvaluator
from ernie_tiny.training.logging import MetricsLog, format_losses, write_run_summary
from ernie_tiny.training.loop import LAST_STATE, RunContext, StepLoss, TrainSpec, start_run, train
from ernie_tiny.training.schedule import OptimConfig, set_seed
from ernie_tiny.config import check_model_start
from ernie_tiny.training.state import StrictConfig, plain

BEST_DIR = "best"
TOKENIZER_DIR = "tokenizer"
# Config fields a resumed run may change: they do not alter the trained weights.
RESUMABLE_CHANGES = frozenset({"resume", "overwrite", "out_dir", "device", "eval_batch_size", "batch_order",
                               "optim.eval_every", "optim.save_every", "optim.log_every"})


def default_lr(from_checkpoint: bool) -> float:
    """Peak learning rate when none is given: small for a pretrained start, larger from scratch.

    From scratch, teacher-small on reviews (max_len 64, batch 32, 300 steps) reached dev
    accuracy 0.779 at 3e-4, 0.744 at 5e-4, and stayed at the majority class through step 150 at 1e-3.
    """
    return 5e-5 if from_checkpoint else 3e-4


@dataclass
class FinetuneConfig(StrictConfig):
    task: str  # a name in ernie_tiny.tasks.TASKS
    out_dir: str
    preset: str | None = None  # random-init teacher of this ErnieConfig preset (vocab from the train texts)
    init: str | None = None  # or: start from this checkpoint
    data_dir: str | None = None  # folder of train/dev/test.tsv; None only for embedded tasks
    max_len: int = 128  # tokens per example, [CLS]/[SEP] included; longer texts are truncated and counted
    max_steps: int = 1000  # optimizer steps (the schedule decays to 0 at the last one)
    vocab_from_train: bool = False  # with --init: new char vocab from the train texts, known rows kept
    vocab_min_freq: int = 1  # chars seen fewer times in train become [UNK]
    device: str | None = None  # None: cuda when available, else cpu (under torchrun: one GPU per process)
    eval_batch_size: int = 64
    batch_order: BatchOrder = BatchOrder.auto  # auto: length-buckets on CUDA, shuffled on CPU (kept on resume)
    limit: int | None = None  # train on the first N training examples only (dev and test stay whole)
    eval_limit: int | None = None  # score only the first N dev / test examples (quick runs, smoke tests)
    resume: bool = False  # continue from out_dir/last.pt
    overwrite: bool = False  # start over even though out_dir holds an earlier run's last.pt
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        if isinstance(self.optim, dict):
            self.optim = OptimConfig.from_dict(self.optim)
        self.batch_order = BatchOrder(self.batch_order)
        check_model_start(self, PRESETS)
        task = get_task(self.task)
        if self.data_dir is None and not task.embedded:
            raise ValueError(f"task {task.name} needs --data-dir (a folder with train.tsv, dev.tsv, test.tsv)")
        if self.max_len < 8:
            raise ValueError(f"max_len must be >= 8, got {self.max_len}")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.vocab_min_freq < 1 or self.eval_batch_size < 1 or any(
                limit is not None and limit < 1 for limit in (self.limit, self.eval_limit)):
            raise ValueError("vocab_min_freq, eval_batch_size, limit and eval_limit must be >= 1")



@dataclass
class Prepared:
    task: TaskSpec
    examples: dict[str, list[Example]]  # train, dev and (when its file exists) test
    encoded: dict[str, EncodedSplit]
    model: nn.Module
    tokenizer: Tokenizer
    source: str  # one line: which preset / checkpoint the teacher came from


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


def shared_tokens(old: Tokenizer | None, new: CharTokenizer) -> dict[int, int]:
    """new id -> old id of every token both vocabularies have (none when the checkpoint has no vocabulary)."""
    old_vocab = getattr(old, "vocab", None) or {}
    return {index: old_vocab[token] for token, index in new.vocab.items() if token in old_vocab}


def with_new_vocab(model: nn.Module, old: Tokenizer | None, new: CharTokenizer, seed: int) -> nn.Module:
    """The model rebuilt for ``new``'s vocabulary: every other tensor kept, the pretrained embedding row of every
    token both vocabularies share copied; only the rows of new tokens keep their fresh initialisation."""
    config = replace(encoder_of(model).config, vocab_size=new.vocab_size, pad_token_id=new.pad_id)
    set_seed(seed)
    rebuilt = build_model(config, getattr(model, "head_kind"), getattr(model, "num_labels"))
    # the word embeddings (and an MLM head's per-token bias) are sized by the vocabulary: rebuilt row by row
    per_token = ("word_embeddings.weight", "decoder_bias")
    state = {k: v for k, v in model.state_dict().items() if not k.endswith(per_token)}
    rebuilt.load_state_dict(state, strict=False)
    shared = shared_tokens(old, new)
    old_state, new_state = model.state_dict(), rebuilt.state_dict()  # detached views of the parameters
    for name in per_token:
        old_rows = next((t for k, t in old_state.items() if k.endswith(name)), None)
        new_rows = next((t for k, t in new_state.items() if k.endswith(name)), None)
        if old_rows is not None and new_rows is not None:
            for new_id, old_id in shared.items():
                new_rows[new_id] = old_rows[old_id]
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
        source = f"{model_config.describe()}, random init, char vocab from {data_name(task, config.data_dir)} train"
    else:
        loaded = load_checkpoint(config.init)  # ours, Hugging Face or Paddle layout
        model, head_note = with_task_head(loaded, task, seed)
        source = f"{loaded.config.describe()}, from {config.init} ({head_note})"
        if config.vocab_from_train or loaded.tokenizer is None:
            if not config.vocab_from_train:
                raise ValueError(f"{config.init}: checkpoint has no tokenizer files; add --vocab-from-train")
            # the checkpoint's casing, so that its tokens can match the new ones
            lower = getattr(loaded.tokenizer, "do_lower_case", True)
            tokenizer = tokenizer or CharTokenizer.from_texts(texts_of(train), min_freq=config.vocab_min_freq,
                                                              do_lower_case=lower)
            model = with_new_vocab(model, loaded.tokenizer, tokenizer, seed)
            kept = len(shared_tokens(loaded.tokenizer, tokenizer))
            source += (f", char vocab rebuilt from {data_name(task, config.data_dir)} train: {kept} of {tokenizer.vocab_size} embedding "
                       f"rows kept from the checkpoint, {tokenizer.vocab_size - kept} new"
                       + ("" if loaded.tokenizer is not None else " (the checkpoint has no vocab.txt to match)"))
        else:
            tokenizer = loaded.tokenizer
    limit = encoder_of(model).config.max_position_embeddings
    if config.max_len > limit:
        raise ValueError(f"max_len {config.max_len} exceeds the model's max_position_embeddings {limit}")
    return model, tokenizer, source


def prepare(config: FinetuneConfig, console: Console) -> Prepared:
    """Read the task's splits, build the teacher and its tokenizer, encode every split."""
    task = get_task(config.task)
    examples = load_splits(task, config.data_dir, config.limit, config.eval_limit)  # test is optional
    resumed_tokenizer_dir = Path(config.out_dir) / TOKENIZER_DIR
    tokenizer = load_tokenizer(resumed_tokenizer_dir) if config.resume and resumed_tokenizer_dir.is_dir() else None
    model, tokenizer, source = build_teacher(config, task, examples["train"], tokenizer)
    encoded = {split: encode_examples(rows, tokenizer, config.max_len) for split, rows in examples.items()}
    console.print(f"teacher: {source}")
    console.print(f"examples of {data_name(task, config.data_dir)}: " + ", ".join(
        f"{s} {len(rows)} ({encoded[s].truncated} truncated to {config.max_len} tokens)" for s, rows in examples.items()))
    return Prepared(task, examples, encoded, model, tokenizer, source)


# ---- training ---------------------------------------------------------------------------------------

def finetune(config: FinetuneConfig, console: Console | None = None,
             after_step: Callable[[int], None] | None = None) -> FinetuneResult:
    """Run a whole fine-tuning: prepare, train on the loop, then score the best checkpoint on dev and test.

    Under ``torchrun`` every process trains on its shard of each batch; only rank 0 writes.
    ``after_step(step)`` runs after each step (tests raise from it to simulate a crash).
    """
    return run_in_process_group(config.device, console,
                                lambda ctx, console: finetune_in_context(config, ctx, console, after_step))


def finetune_in_context(config: FinetuneConfig, ctx: DistributedContext, console: Console,
                        after_step: Callable[[int], None] | None) -> FinetuneResult:
    start = start_run(config, ctx, RESUMABLE_CHANGES)
    out_dir, resume = start.out_dir, start.resume
    prepared = prepare(config, console)
    task, tokenizer, optim = prepared.task, prepared.tokenizer, config.optim
    if ctx.is_main and resume is None:
        with atomic_dir(out_dir / TOKENIZER_DIR) as tmp:
            tokenizer.save(str(tmp))
    evaluator = SplitEvaluator(task, prepared.examples, config.max_len, config.eval_batch_size, ctx)
    evaluator.add_encoded(tokenizer, prepared.encoded)  # dev and test are encoded once, in prepare
    train_items = prepared.encoded["train"].items
    # auto resolves on this device, but a resumed run keeps the order its first segment used
    batch_order = BatchOrder(resume.extra.get("batch_order", "shuffled")) if resume is not None \
        else config.batch_order.resolve(ctx.device.type)
    lengths = [len(item.encoding.input_ids) for item in train_items]
    model_config = encoder_of(prepared.model).config

    def items_for_step(step: int) -> list:
        # The batch is a pure function of (seed, step, rank): a resumed run sees the same data order.
        if batch_order is BatchOrder.length_buckets:
            return bucketed_batch_for_step(train_items, lengths, step, optim.batch_size, optim.seed,
                                           ctx.rank, ctx.world_size)
        return batch_for_step(train_items, step, optim.batch_size, optim.seed, ctx.rank, ctx.world_size)

    def save_best(model: nn.Module, step: int, dev: dict[str, float]) -> None:
        save_pretrained(model, out_dir / BEST_DIR, tokenizer, task.name, list(task.labels),
                        extra={"step": step, "dev": dev, "source": prepared.source, "finetune_config": plain(config)})

    spec = TrainSpec(
        name=f"fine-tune {task.name}", model=prepared.model, steps=config.max_steps,
        items_for_step=items_for_step,
        collate=lambda items: collate(task, items, pad_id=tokenizer.pad_id),
        # forward + backward ~ 3 forwards (the backward computes gradients of inputs and of weights)
        flops_of=lambda batch: 3 * pass_flops(model_config, task.head, task.num_labels, [tuple(batch.input_ids.shape)]),
        loss_fn=lambda model, batch: StepLoss(model(**batch.model_inputs()).loss, {}),
        evaluate=lambda model: evaluator(model, tokenizer, "dev"), main_metric=task.main_metric, save_best=save_best)
    metrics = MetricsLog(out_dir, resume_step=resume.step if resume else None) if ctx.is_main else None
    if resume is not None:
        console.print(f"resumed from {out_dir / LAST_STATE} at step {resume.step}")
    run = RunContext(ctx, out_dir, config, console, metrics, after_step=after_step,
                     extra={"batch_order": batch_order.value})
    state = train(spec, optim, run, resume)
    barrier(ctx)
    best = load_pretrained(out_dir / BEST_DIR)
    best.model.to(ctx.device)
    dev = evaluator(best.model, tokenizer, "dev")
    test = evaluator(best.model, tokenizer, "test") if "test" in prepared.examples else None
    truncated = {split: encoded.truncated for split, encoded in prepared.encoded.items()}
    result = FinetuneResult(out_dir, out_dir / BEST_DIR, prepared.source, state.step, state.best.step,
                            dev, test, state.train_seconds, truncated)
    if ctx.is_main:
        metrics.write_csv()
        write_run_summary(out_dir, {
            "task": task.name, "main_metric": task.main_metric, "preset": config.preset,
            "init": config.init, "source": prepared.source, "steps": result.steps, "best_step": result.best_step,
            "dev": dev, "test": test, "train_seconds": round(result.train_seconds, 1),
            "precision": start.amp.name, "world_size": ctx.world_size,
            "batch_order": batch_order.value, "batch_size": optim.batch_size,
            "examples": {split: len(rows) for split, rows in prepared.examples.items()}, "truncated": truncated,
            "config": plain(config)})
        console.print(f"best step {result.best_step}: dev {format_losses(dev)}"
                      + (f"; test {format_losses(test)}" if test else "") + f"; {out_dir / BEST_DIR}")
    return result
