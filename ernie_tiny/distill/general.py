"""General distillation: a task-agnostic student from unlabelled text (TinyBERT's first phase).

Only the intermediate-layer losses (embeddings, hidden states, attention through the
layer map) are used; the teacher can be any encoder checkpoint (its head is ignored),
and the text is the embedded People's Daily + review corpus unless ``corpus`` names a
file with one text per line. The loop is :func:`ernie_tiny.distill.train.run_stages`;
only the items and the checkpoint written at the end differ from task distillation.

The result, ``out_dir/student/`` (head ``encoder``, with its tokenizer), is a
``--student-init`` for ``ernie-tiny distill``.

Example::

    config = GeneralDistillConfig(teacher="runs/teacher/best", out_dir="runs/general", steps=2000)
    result = distill_general(config)
    result.student_dir   # runs/general/student
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from ernie_tiny.data.embedded_text import embedded_corpus_texts
from ernie_tiny.distill.config import GeneralDistillConfig, Stage
from ernie_tiny.distill.data import NO_LABEL, alignment_coverage, build_items
from ernie_tiny.training.distributed import DistributedContext, barrier, run_in_process_group
from ernie_tiny.distill.setup import load_teacher_with_tokenizer, setup_student
from ernie_tiny.training.loop import start_run
from ernie_tiny.distill.teacher import DistillTeacher
from ernie_tiny.distill.train import Session, StagePlan, run_stages
from ernie_tiny.model import HeadKind, encoder_of
from ernie_tiny.training.logging import write_run_summary
from ernie_tiny.text_files import Blank, read_lines
from ernie_tiny.training.state import plain

STUDENT_DIR = "student"
# Config fields a resumed run may change: they do not alter the trained weights.
RESUMABLE_CHANGES = frozenset({"resume", "overwrite", "out_dir", "device", "optim.save_every", "optim.log_every"})


@dataclass
class GeneralDistillResult:
    out_dir: Path
    student_dir: Path
    steps: int  # steps run (under --max-minutes, what the time budget fixed)
    texts: int
    train_seconds: float


def read_corpus(path: str | None, max_texts: int | None) -> list[str]:
    """Non-empty stripped lines of ``path`` (UTF-8), or the embedded corpus; the first ``max_texts``."""
    if path is None:
        texts = [t for t in embedded_corpus_texts() if t]
    else:
        texts = [line.text for line in read_lines(path, strip=True, blank=Blank.skip, what="corpus file")]
    texts = texts[:max_texts]
    if not texts:
        raise ValueError(f"{path or 'embedded corpus'}: no non-empty lines")
    return texts


def distill_general(config: GeneralDistillConfig, console: Console | None = None,
                    after_step: Callable[[int], None] | None = None) -> GeneralDistillResult:
    """Train a task-agnostic student on the intermediate-layer losses; writes ``out_dir/student``."""
    return run_in_process_group(config.device, console,
                                lambda ctx, console: general_in_context(config, ctx, console, after_step))


def general_in_context(config: GeneralDistillConfig, ctx: DistributedContext, console: Console,
                       after_step: Callable[[int], None] | None) -> GeneralDistillResult:
    wall_start = time.perf_counter()
    start = start_run(config, ctx, RESUMABLE_CHANGES)
    out_dir = start.out_dir
    teacher = load_teacher_with_tokenizer(config.teacher)
    teacher_encoder = encoder_of(teacher.model).to(ctx.device).eval().requires_grad_(False)
    texts = read_corpus(config.corpus, config.max_texts)
    setup = setup_student(config, teacher, HeadKind.encoder, 0, [], ctx, console)
    student_tok, student_config = setup.tokenizer, setup.student_config
    console.print(f"encoding {len(texts)} texts with both tokenizers")
    items = build_items([(t, None) for t in texts], [NO_LABEL] * len(texts), teacher.tokenizer,
                        None if student_tok.shared else student_tok.tokenizer, config.max_len)
    console.print(f"teacher: {teacher.config.describe()} ({config.teacher}), encoder only")
    console.print(f"student: {setup.note}; tokenizer: {student_tok.source}")
    console.print(f"corpus: {len(texts)} texts from {config.corpus or 'the embedded corpus'}; aligned student tokens "
                  f"{100 * alignment_coverage(items):.1f}%; {ctx.world_size} process(es) on {ctx.device}")
    presets = {"teacher": teacher.config.preset, "student": student_config.preset}
    distill_teacher = DistillTeacher(
        model=teacher_encoder, tokenizer=teacher.tokenizer, items=items, cache=None,
        amp=start.amp, device=ctx.device, chunk_size=config.optim.batch_size,
        student_pad_id=student_tok.tokenizer.pad_id, reads_attention=setup.objective.needs_attention,
        reads_logits=setup.objective.weights.soft != 0)
    session = Session(ctx=ctx, console=console, out_dir=out_dir, config=config, teacher=distill_teacher,
                      student_tokenizer=student_tok.tokenizer, objective=setup.objective,
                      checkpoint_extra={"teacher": config.teacher, "presets": presets, "general_distillation": True})

    def on_stage_end(stage: Stage, steps: int) -> None:
        session.save_student(out_dir / STUDENT_DIR, {"stage": stage.value, "steps": steps})

    state = run_stages(session, [StagePlan(Stage.intermediate, config.steps, config.optim.lr)], start.resume,
                       after_step, on_stage_end)
    barrier(ctx)
    steps = state.steps[Stage.intermediate.value]
    if ctx.is_main:
        write_run_summary(out_dir, {
            "steps": steps, "texts": len(texts), "presets": presets, "student_tokenizer": student_tok.source,
            "student_dir": str(out_dir / STUDENT_DIR), "world_size": ctx.world_size, "device": str(ctx.device),
            "train_seconds": round(state.train_seconds, 1), "wall_seconds": round(time.perf_counter() - wall_start, 1),
            "config": plain(config)})
        console.print(f"general-distilled student: {out_dir / STUDENT_DIR}")
    return GeneralDistillResult(out_dir, out_dir / STUDENT_DIR, steps, len(texts), state.train_seconds)
