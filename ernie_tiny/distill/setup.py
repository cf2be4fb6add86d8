"""What task and general distillation set up the same way: the teacher and the student.

(The run folder check is every trainer's :func:`ernie_tiny.training.loop.start_run`.)

    teacher = load_teacher_with_tokenizer(path)
    setup = setup_student(config, teacher, head, num_labels, labels, ctx, console)
    setup.objective   # student + hidden-size projection + layer map + loss weights

Example::

    setup = setup_student(config, teacher, HeadKind.encoder, 0, [], ctx, Console())
    setup.student_config.num_layers
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rich.console import Console
from torch import nn

from ernie_tiny.checkpoint import LoadedCheckpoint
from ernie_tiny.convert.detect import load_checkpoint
from ernie_tiny.distill.config import DistillConfig, GeneralDistillConfig, resolve_student_preset
from ernie_tiny.distill.data import StudentTokenizer, resolve_student_tokenizer
from ernie_tiny.distill.layer_map import LayerMap, parse_layer_map
from ernie_tiny.distill.objective import DistillObjective
from ernie_tiny.distill.projection import HiddenProjection
from ernie_tiny.model import ErnieConfig, HeadKind, build_model, encoder_of
from ernie_tiny.tokenization.encoding import Tokenizer
from ernie_tiny.training.distributed import DistributedContext
from ernie_tiny.training.schedule import set_seed


def load_teacher_with_tokenizer(path: str) -> LoadedCheckpoint:
    """The teacher checkpoint; distillation needs its tokenizer files too."""
    loaded = load_checkpoint(path)
    if loaded.tokenizer is None:
        raise ValueError(f"{path}: the teacher has no tokenizer files (vocab.txt)")
    return loaded


@dataclass
class StudentSetup:
    tokenizer: StudentTokenizer
    student: nn.Module
    note: str  # one line: preset or init checkpoint, what was copied
    student_config: ErnieConfig  # the student's encoder config
    layer_map: LayerMap
    objective: DistillObjective  # student + projection + losses: what the loop trains


def setup_student(config: DistillConfig | GeneralDistillConfig, teacher: LoadedCheckpoint, head: HeadKind,
                  num_labels: int, labels: list[str], ctx: DistributedContext, console: Console) -> StudentSetup:
    """The student (preset at random init, or ``--student-init``), its tokenizer, and the objective that
    ties it to ``teacher`` through the layer map and the hidden-size projection."""
    # ours, or any layout convert/ reads: the official ERNIE-tiny release comes with its subword tokenizer
    init = load_checkpoint(config.student_init) if config.student_init else None
    student_tok = resolve_student_tokenizer(config.student_tokenizer, init.tokenizer if init else None,
                                            teacher.tokenizer, config.subword_vocab_size, ctx, console)
    preset = None if init else resolve_student_preset(config.student_preset, ctx.device.type)
    set_seed(config.optim.seed)  # the student's initial weights follow from the seed
    student, note = build_student(ErnieConfig.from_preset(preset) if preset else None, init, head, num_labels,
                                  student_tok.tokenizer, labels)
    student_config = encoder_of(student).config
    for name, limit in (("teacher", teacher.config.max_position_embeddings),
                        ("student", student_config.max_position_embeddings)):
        if config.max_len > limit:
            raise ValueError(f"max_len {config.max_len} exceeds the {name}'s max_position_embeddings {limit}")
    layer_map = parse_layer_map(config.layer_map, teacher.config.num_layers, student_config.num_layers)
    projection = HiddenProjection.for_layer_map(student_config.hidden_size, teacher.config.hidden_size, layer_map,
                                                per_match=config.per_layer_projection)
    objective = DistillObjective(student, projection, layer_map, config.loss_weights, config.attention_loss)
    return StudentSetup(student_tok, student, note, student_config, layer_map, objective)


def build_student(config: ErnieConfig | None, init: LoadedCheckpoint | None, head: HeadKind, num_labels: int,
                  tokenizer: Tokenizer, labels: list[str]) -> tuple[nn.Module, str]:
    """A student for ``tokenizer``: a preset (``config``) at random init, or the ``init`` checkpoint's weights.

    From a checkpoint with another head (a general-distilled encoder) only the encoder is copied.
    """
    if init is None:
        config = replace(config, vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_id)
        return build_model(config, head, num_labels), f"{config.describe()}, random init"
    if init.config.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"--student-init has a vocabulary of {init.config.vocab_size} but the student tokenizer has "
                         f"{tokenizer.vocab_size} tokens: use the init checkpoint's own tokenizer")
    model = build_model(init.config, head, num_labels)
    if init.meta.head is head and list(init.meta.labels) == list(labels):
        model.load_state_dict(init.model.state_dict())
        return model, f"{init.config.describe()}, all weights from the init checkpoint"
    encoder_of(model).load_state_dict(encoder_of(init.model).state_dict())
    return model, f"{init.config.describe()}, encoder from the init checkpoint ({init.meta.head.value} head dropped)"
