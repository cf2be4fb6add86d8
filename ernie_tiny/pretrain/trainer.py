"""Pretraining on the one training loop: ERNIE 1.0 knowledge masking (+ ERNIE 2.0 sentence distance).

    PretrainConfig -> corpus (files, or the embedded People's Daily + reviews) + tokenizer + model
                   -> training.loop.train(masked examples of step s, masked-LM [+ sentence-distance] loss)
                   -> best/ (masked_lm checkpoint with its tokenizer) + metrics.json

The result is a ``masked_lm`` checkpoint: ``teacher finetune --init`` puts a task head on its
encoder, ``distill-general --teacher`` distils it into a subword student (as Baidu made
ERNIE-tiny), and ``augment --mlm-teacher`` uses its masked-LM head. Evaluation every
``optim.eval_every`` steps scores a fixed set of masked examples (of ``dev_corpus`` when
given, else drawn from the training corpus with another seed: then it measures fit, not
generalisation); ``best/`` keeps the step with the highest masked-LM accuracy.

Files in ``out_dir``: ``best/``, ``last.pt`` (resumable), ``tokenizer/`` (built once from the
corpus when none is given, reused on resume), ``metrics.jsonl`` / ``metrics.csv`` /
``loss_curve.png`` and ``metrics.json``.

Example::

    config = PretrainConfig(out_dir="runs/pretrain", preset="teacher-small", max_steps=20000)
    result = pretrain(config)
    result.dev["mlm_accuracy"]
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path

import torch
from rich.console import Console
from torch import nn

from ernie_tiny.checkpoint import save_pretrained
from ernie_tiny.convert.detect import load_checkpoint
from ernie_tiny.io_utils import atomic_dir
from ernie_tiny.flops import pass_flops
from ernie_tiny.heads import HeadKind
from ernie_tiny.model import PRESETS, ErnieConfig, ErnieForMaskedLM, ErnieForPretraining, encoder_of
from ernie_tiny.pretrain.batches import PretrainBatch, PretrainDataConfig, PretrainingData
from ernie_tiny.pretrain.corpus import DocumentLayout, open_corpus
from ernie_tiny.pretrain.embedded import EmbeddedCorpus
from ernie_tiny.pretrain.masking import IGNORE_INDEX, MaskingConfig
from ernie_tiny.pretrain.wordcache import CachedWords, corpus_words, needs_words
from ernie_tiny.tokenization.char import CharTokenizer
from ernie_tiny.tokenization.encoding import Tokenizer
from ernie_tiny.tokenization.load import load_tokenizer
from ernie_tiny.training.distributed import DistributedContext, all_reduce_sum, barrier, run_in_process_group
from ernie_tiny.training.logging import MetricsLog, format_losses, write_run_summary
from ernie_tiny.training.loop import LAST_STATE, RunContext, StepLoss, TrainSpec, start_run, train
from ernie_tiny.training.schedule import OptimConfig, set_seed
from ernie_tiny.config import check_model_start
from ernie_tiny.training.state import StrictConfig, plain

BEST_DIR = "best"
TOKENIZER_DIR = "tokenizer"
VOCAB_TEXTS = 200_000  # sentences read to build a char vocabulary when no tokenizer is given
SENTENCE_DISTANCE_CLASSES = 3  # adjacent / same document / other document
# Config fields a resumed run may change: they do not alter the trained weights.
RESUMABLE_CHANGES = frozenset({"resume", "overwrite", "out_dir", "device", "eval_batch_size", "data_workers",
                               "word_cache", "word_cache_dir",  # the masks are the same with and without it
                               "optim.eval_every",
                               "optim.save_every", "optim.log_every"})


class Objective(str, Enum):
    mlm = "mlm"  # ERNIE 1.0: masked LM over knowledge-masked units
    sentence_distance = "sentence-distance"  # ERNIE 2.0: adjacent / same document / other document


@dataclass
class PretrainConfig(StrictConfig):
    out_dir: str
    preset: str | None = None  # random init of this ErnieConfig preset
    init: str | None = None  # or: continue from this checkpoint (a masked_lm one keeps its head)
    corpus: list[str] = field(default_factory=list)  # text / .gz / ERNIE 1.0 id files and folders; []: embedded
    layout: DocumentLayout = DocumentLayout.line  # line: one document per line; paragraph: blank-line separated
    dev_corpus: list[str] = field(default_factory=list)  # held-out documents to evaluate on ([]: see module doc)
    tokenizer: str | None = None  # tokenizer folder; None: the init checkpoint's, else a char vocab from the corpus
    vocab_min_freq: int = 3  # chars seen fewer times in the corpus become [UNK] (built vocab only)
    max_vocab: int = 18000  # ERNIE 1.0's char vocabulary size, specials included (built vocab only)
    objectives: list[Objective] = field(default_factory=lambda: [Objective.mlm])
    masking: MaskingConfig = field(default_factory=MaskingConfig)  # 15% whole units, 80/10/10, the unit mix
    pair_share: float = 0.5  # with sentence-distance: share of examples that are sentence pairs
    max_len: int = 128  # tokens per example, [CLS]/[SEP] included
    max_steps: int = 10000
    eval_examples: int = 512  # masked dev examples scored at every evaluation
    eval_batch_size: int = 64
    data_workers: int = 1  # processes masking the next steps' examples while this one trains (jieba is slow)
    word_cache: bool = True  # segment the corpus once up front (data_workers processes) and cache it; False: per example
    word_cache_dir: str | None = None  # the word cache's folder; None: $ERNIE_TINY_CACHE/words or ~/.cache/ernie-tiny/words
    device: str | None = None  # None: cuda when available, else cpu
    resume: bool = False
    overwrite: bool = False
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-4, warmup_ratio=0.05, eval_every=1000,
                                                                   save_every=500, log_every=20))

    def __post_init__(self) -> None:
        self.layout = DocumentLayout(self.layout)
        self.objectives = [Objective(o) for o in self.objectives]
        if isinstance(self.masking, dict):
            self.masking = MaskingConfig.from_dict(self.masking)
        if isinstance(self.optim, dict):
            self.optim = OptimConfig.from_dict(self.optim)
        check_model_start(self, PRESETS)
        if Objective.mlm not in self.objectives:
            raise ValueError("the objectives must include mlm (sentence-distance is an addition to it)")
        if self.data_workers < 0:
            raise ValueError(f"data_workers must be >= 0, got {self.data_workers}")
        for name in ("max_len", "max_steps", "eval_examples", "eval_batch_size", "vocab_min_freq", "max_vocab"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        self.data_config(seed=0)  # raises on a bad max_len / pair_share

    @property
    def sentence_distance(self) -> bool:
        return Objective.sentence_distance in self.objectives

    def data_config(self, seed: int) -> PretrainDataConfig:
        return PretrainDataConfig(max_len=self.max_len, batch_size=self.optim.batch_size, seed=seed,
                                  sentence_distance=self.sentence_distance, pair_share=self.pair_share,
                                  masking=self.masking)



@dataclass
class PretrainResult:
    out_dir: Path
    best_dir: Path
    steps: int
    best_step: int
    dev: dict[str, float]
    train_seconds: float


# ---- corpus, tokenizer, model --------------------------------------------------------------------

def read_corpus(paths: list[str], layout: DocumentLayout, cache_dir: Path, vocab_size: int | None = None):
    """The embedded corpus for no paths, else the indexed files."""
    if not paths:
        return EmbeddedCorpus.load()
    return open_corpus(paths, layout=layout, cache_dir=cache_dir, vocab_size=vocab_size)


def corpus_tokenizer(corpus, config: PretrainConfig) -> CharTokenizer:
    """A char vocabulary of the corpus's first ``VOCAB_TEXTS`` sentences, most frequent first."""
    texts = itertools.islice(corpus.iter_texts(), VOCAB_TEXTS)
    return CharTokenizer.from_texts(texts, min_freq=config.vocab_min_freq, max_size=config.max_vocab)


def build_pretraining_model(config: PretrainConfig, tokenizer: Tokenizer | None) -> tuple[nn.Module, Tokenizer, str]:
    """The model to pretrain, its tokenizer and a one-line description of where it came from."""
    classes = SENTENCE_DISTANCE_CLASSES if config.sentence_distance else 0
    set_seed(config.optim.seed)
    if config.preset is not None:
        model_config = ErnieConfig.from_preset(config.preset, vocab_size=tokenizer.vocab_size,
                                               pad_token_id=tokenizer.pad_id, use_task_id=config.sentence_distance)
        return ErnieForPretraining(model_config, classes), tokenizer, f"{model_config.describe()}, random init"
    loaded = load_checkpoint(config.init)
    tokenizer = tokenizer or loaded.tokenizer
    if tokenizer is None:
        raise ValueError(f"{config.init}: checkpoint has no tokenizer files; give --tokenizer")
    if tokenizer.vocab_size != loaded.config.vocab_size:
        raise ValueError(f"--tokenizer has {tokenizer.vocab_size} tokens but {config.init} has a vocabulary of "
                         f"{loaded.config.vocab_size}")
    if config.sentence_distance and not loaded.config.use_task_id:
        raise ValueError(f"{config.init}: sentence-distance needs task-type embeddings the checkpoint lacks; "
                         "pretrain it with --objectives mlm,sentence-distance from a --preset")
    if isinstance(loaded.model, ErnieForMaskedLM):
        model = ErnieForPretraining.from_masked_lm(loaded.model, classes)
        note = "masked-LM head kept"
    else:
        model = ErnieForPretraining(loaded.config, classes)
        encoder_of(model).load_state_dict(encoder_of(loaded.model).state_dict())
        note = f"encoder kept, {loaded.meta.head.value} head replaced by a masked-LM head"
    return model, tokenizer, f"{loaded.config.describe()}, from {config.init} ({note})"


# ---- evaluation ----------------------------------------------------------------------------------

class MaskedLMEvaluator:
    """Masked-LM accuracy and loss (and sentence-distance accuracy) on a fixed set of masked examples.

    Under torchrun each process scores every N-th batch and the sums are all-reduced.
    """

    def __init__(self, data: PretrainingData, examples: int, batch_size: int, ctx: DistributedContext):
        self.batches = [data.collate([data.example(k) for k in range(start, min(start + batch_size, examples))])
                        for start in range(0, examples, batch_size)]
        self.ctx = ctx

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> dict[str, float]:
        was_training = model.training
        model.eval()
        sums = [0.0] * 5  # loss sum, correct, masked tokens, sentence-distance correct, sentence-distance labelled
        for batch in self.batches[self.ctx.rank::self.ctx.world_size]:
            batch = batch.to(self.ctx.device)
            out = model(**batch.model_inputs())
            labels = batch.mlm_labels[batch.mlm_labels != IGNORE_INDEX]  # (M,) the row-major masked positions
            sums[0] += float(out.terms["masked_lm"]) * len(labels)
            sums[1] += float((out.masked_lm_logits.argmax(-1) == labels).sum())
            sums[2] += len(labels)
            if out.sentence_distance_logits is not None and batch.sentence_distance_labels is not None:
                gold = batch.sentence_distance_labels
                labelled = gold != IGNORE_INDEX
                sums[3] += float((out.sentence_distance_logits.argmax(-1)[labelled] == gold[labelled]).sum())
                sums[4] += float(labelled.sum())
        loss, correct, tokens, sd_correct, sd_total = all_reduce_sum(sums, self.ctx)
        model.train(was_training)
        metrics = {"mlm_accuracy": correct / max(tokens, 1), "mlm_loss": loss / max(tokens, 1)}
        if sd_total:
            metrics["sentence_distance_accuracy"] = sd_correct / sd_total
        return metrics


# ---- the run -------------------------------------------------------------------------------------

def cached_words(corpus, config: PretrainConfig, ctx: DistributedContext,
                 progress: Callable[[int, int], None] | None) -> CachedWords | None:
    """The corpus's word cache (segmented once by the main process, with progress); None: words per example."""
    if not (config.word_cache and needs_words(corpus, config.masking)):
        return None
    words = None
    if ctx.is_main:
        words = corpus_words(corpus, config.masking.jieba_hmm, config.word_cache_dir, max(1, config.data_workers),
                             progress)
    barrier(ctx)  # the other ranks read what the main one wrote
    return words if words is not None else corpus_words(corpus, config.masking.jieba_hmm, config.word_cache_dir)


def pretrain(config: PretrainConfig, console: Console | None = None,
             after_step: Callable[[int], None] | None = None,
             progress: Callable[[int, int], None] | None = None) -> PretrainResult:
    """Pretrain on the loop (one process, or every process under torchrun); returns the best dev result.

    ``progress(done, total)`` follows the one-time segmentation of the corpus's sentences (word cache).
    """
    return run_in_process_group(config.device, console,
                                lambda ctx, console: pretrain_in_context(config, ctx, console, after_step, progress))


def pretrain_in_context(config: PretrainConfig, ctx: DistributedContext, console: Console,
                        after_step: Callable[[int], None] | None,
                        progress: Callable[[int, int], None] | None = None) -> PretrainResult:
    start = start_run(config, ctx, RESUMABLE_CHANGES)
    out_dir, resume, amp = start.out_dir, start.resume, start.amp
    started = time.perf_counter()
    corpus = read_corpus(config.corpus, config.layout, out_dir / "corpus-cache")
    saved_tokenizer = out_dir / TOKENIZER_DIR
    if resume is not None and saved_tokenizer.is_dir():
        tokenizer = load_tokenizer(saved_tokenizer)
    elif config.tokenizer is not None:
        tokenizer = load_tokenizer(config.tokenizer)
    else:
        tokenizer = None if config.init else corpus_tokenizer(corpus, config)
    model, tokenizer, source = build_pretraining_model(config, tokenizer)
    if ctx.is_main and resume is None:
        with atomic_dir(saved_tokenizer) as tmp:
            tokenizer.save(str(tmp))
    words = cached_words(corpus, config, ctx, progress)
    data = PretrainingData(corpus, tokenizer, config.data_config(seed=config.optim.seed), words)
    dev_corpus = read_corpus(config.dev_corpus, config.layout, out_dir / "corpus-cache") if config.dev_corpus \
        else corpus
    dev_data = PretrainingData(dev_corpus, tokenizer, replace(config.data_config(seed=config.optim.seed + 1),
                                                              batch_size=config.eval_batch_size),
                               words if dev_corpus is corpus else cached_words(dev_corpus, config, ctx, None))
    evaluator = MaskedLMEvaluator(dev_data, config.eval_examples, config.eval_batch_size, ctx)
    console.print(f"model: {source}; tokenizer: {tokenizer.kind}, {tokenizer.vocab_size} tokens")
    console.print(f"corpus: {len(corpus)} documents from {', '.join(config.corpus) or 'the embedded corpus'}; "
                  f"objectives {', '.join(o.value for o in config.objectives)}; masking {plain(config.masking)}; "
                  f"{ctx.world_size} process(es) on {ctx.device}, {amp.name}")

    def flops_of(batch: PretrainBatch) -> int:
        """Training FLOPs (3 forwards): the encoder over every position, the masked-LM head over the masked ones."""
        rows, length = batch.input_ids.shape
        h, vocab = encoder_of(model).config.hidden_size, encoder_of(model).config.vocab_size
        masked = int((batch.mlm_labels != IGNORE_INDEX).sum())  # a CPU tensor: no device sync
        return 3 * (pass_flops(encoder_of(model).config, HeadKind.encoder, 0, [(rows, length)])
                    + 2 * masked * (h * h + h * vocab))

    def loss_fn(module: nn.Module, batch: PretrainBatch) -> StepLoss:
        out = module(**batch.model_inputs())
        return StepLoss(out.loss, {name: value.detach() for name, value in out.terms.items()})

    def save_best(module: nn.Module, step: int, dev: dict[str, float]) -> None:
        save_pretrained(module.as_masked_lm(), out_dir / BEST_DIR, tokenizer, extra={
            "step": step, "dev": dev, "source": source, "pretrain_config": plain(config)})

    terms = ["masked_lm"] + (["sentence_distance"] if config.sentence_distance else [])
    spec = TrainSpec(
        name="pretrain", model=model, steps=config.max_steps,
        # Step s on rank r reads samples (s * W + r) * B + j of a seeded stream: resumable, disjoint across ranks.
        items_for_step=lambda step: data.examples_for_step(step, ctx.rank, ctx.world_size),
        collate=data.collate, data_workers=config.data_workers, flops_of=flops_of,
        loss_fn=loss_fn, term_names=terms, evaluate=evaluator, main_metric="mlm_accuracy", save_best=save_best)
    metrics = MetricsLog(out_dir, resume_step=resume.step if resume else None) if ctx.is_main else None
    if resume is not None:
        console.print(f"resumed from {out_dir / LAST_STATE} at step {resume.step}")
    state = train(spec, config.optim, RunContext(ctx, out_dir, config, console, metrics, after_step=after_step),
                  resume)
    barrier(ctx)
    dev = state.best.dev  # the best step's dev metrics, measured on these examples when it was saved
    result = PretrainResult(out_dir, out_dir / BEST_DIR, state.step, state.best.step, dev, state.train_seconds)
    if ctx.is_main:
        metrics.write_csv()
        write_run_summary(out_dir, {
            "steps": state.step, "best_step": state.best.step, "dev": dev, "source": source,
            "documents": len(corpus), "tokenizer": {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size},
            "precision": amp.name, "world_size": ctx.world_size, "train_seconds": round(state.train_seconds, 1),
            "wall_seconds": round(time.perf_counter() - started, 1), "config": plain(config)})
        console.print(f"best step {state.best.step}: dev {format_losses(dev)}; {out_dir / BEST_DIR}")
    return result
