"""Typed, validated configs of a distillation run; each is saved in every checkpoint it produces.

:class:`DistillConfig` is one task distillation (``ernie-tiny distill``): a fine-tuned
char teacher supervises a subword student, in two TinyBERT stages (intermediate layers,
then prediction layer), or in one ``joint`` stage with both objectives. :class:`GeneralDistillConfig` is general distillation on
unlabelled text (``ernie-tiny distill-general``): intermediate layers only, producing a
task-agnostic student for ``--student-init``.

Constructors only check values; nothing touches the disk. Defaults that depend on the
machine (the student preset is ``student-small`` on CPU and ``ernie-tiny`` on CUDA) are
resolved by :func:`resolve_student_preset` and printed by the run.

Example::

    config = DistillConfig(teacher="runs/teacher/best", task="chnsenticorp",
                           data_dir="../shared/data/chnsenticorp_htl", out_dir="runs/student",
                           steps_intermediate=300, steps_prediction=300, augment=2)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from ernie_tiny.config import check_run_start
from ernie_tiny.augment.ner import NER_AUGMENT_DEFAULTS, check_ner_config
from ernie_tiny.augment.strategies import AugmentConfig
from ernie_tiny.distill.losses import AttentionLossKind, DistillLossWeights
from ernie_tiny.model import PRESETS
from ernie_tiny.tokenization.subword import DEFAULT_VOCAB_SIZE
from ernie_tiny.tasks import TaskKind, get_task
from ernie_tiny.training.schedule import OptimConfig
from ernie_tiny.training.state import StrictConfig

CHAR_TOKENIZER = "char"  # --student-tokenizer char: the student reads the teacher's char tokens (no alignment)
# Augmentation defaults per task kind (the run's augment_options override them): a ranking copy
# keeps its query and changes the answer; NER copies only replace O-tagged words (augment.ner).
KIND_AUGMENT_DEFAULTS = {TaskKind.ranking: {"augment_text_a": False}, TaskKind.ner: NER_AUGMENT_DEFAULTS}
CPU_STUDENT_PRESET = "student-small"
CUDA_STUDENT_PRESET = "ernie-tiny"


class Stage(str, Enum):
    intermediate = "intermediate"  # TinyBERT stage 1: embeddings, hidden states, attention
    prediction = "prediction"  # TinyBERT stage 2: soft cross-entropy on the teacher's logits (+ hard labels)
    both = "both"  # stage 1, then stage 2 from its result
    joint = "joint"  # one stage, both objectives summed at every step (TextBrewer's way); --steps-prediction steps

    def stages(self) -> tuple["Stage", ...]:
        """The stages to run, in order."""
        return (Stage.intermediate, Stage.prediction) if self is Stage.both else (self,)

    @property
    def matches_features(self) -> bool:
        """True when the step's loss has the layer-map terms (the teacher's hidden states and attention)."""
        return self in (Stage.intermediate, Stage.joint)

    @property
    def matches_logits(self) -> bool:
        """True when the step's loss has the prediction terms (and the stage keeps the best dev student)."""
        return self in (Stage.prediction, Stage.joint)


def resolve_student_preset(preset: str | None, device_type: str) -> str:
    """The preset to build: the one given, else ``ernie-tiny`` on CUDA and ``student-small`` on CPU."""
    if preset is not None:
        return preset
    return CUDA_STUDENT_PRESET if device_type == "cuda" else CPU_STUDENT_PRESET


def check_positive(config: object, names: tuple[str, ...], minimum: int | float = 1) -> None:
    for name in names:
        value = getattr(config, name)
        if value is not None and value < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value}")


def check_preset(preset: str | None) -> None:
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown student preset {preset!r}; known presets: {', '.join(PRESETS)}")


def check_shared_settings(config: "DistillConfig | GeneralDistillConfig") -> None:
    """The checks both distillation configs share: sequence length and attention loss (OptimConfig checks itself)."""
    if config.max_len < 8:
        raise ValueError(f"max_len must be >= 8, got {config.max_len}")
    if config.attention_loss is AttentionLossKind.score_mse and config.student_tokenizer != CHAR_TOKENIZER:
        raise ValueError("attention loss score_mse compares raw scores position by position: it needs "
                         "--student-tokenizer char (a shared tokenizer)")


@dataclass
class DistillConfig(StrictConfig):
    teacher: str  # fine-tuned teacher: our checkpoint folder, a Hugging Face folder or a Paddle folder
    task: str  # a name in ernie_tiny.tasks.TASKS
    out_dir: str
    data_dir: str | None = None  # folder of train/dev/test.tsv; None only for embedded tasks
    # joint: measured best on both tasks at equal steps (README: ChnSentiCorp 85.97 vs 81.98 two-stage,
    # LCQMC 71.28 vs 70.03); both: TinyBERT's schedule
    stage: Stage = Stage.joint
    student_preset: str | None = None  # None: student-small on CPU, ernie-tiny on CUDA
    student_init: str | None = None  # start from this checkpoint (general-distilled or any ernie-tiny one)
    # folder; None: the init checkpoint's, else the embedded-corpus subword one (msra-ner: "char"); "char": the teacher's
    student_tokenizer: str | None = None
    subword_vocab_size: int = DEFAULT_VOCAB_SIZE  # vocabulary of the default subword tokenizer when it must be trained
    layer_map: str = "tinybert"  # preset (tinybert: student i <- teacher i*T/S) or JSON list (distill.layer_map)
    loss_weights: DistillLossWeights = field(default_factory=lambda: DistillLossWeights(temperature=1.0))
    attention_loss: AttentionLossKind = AttentionLossKind.kl  # kl works across tokenizers and head counts
    per_layer_projection: bool = False  # TinyBERT shares one student->teacher projection across layers
    steps_intermediate: int = 300
    steps_prediction: int = 300
    # lr 5e-4: the students start far from any optimum (random or general-distilled init)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-4, eval_every=100, save_every=100))
    lr_prediction: float | None = None  # stage 2 peak lr; None: optim.lr
    eval_batch_size: int = 64
    max_len: int = 128  # teacher (char) tokens; the student uses the same limit on its shorter sequences
    augment: int = 0  # N augmented copies per training example (0: none), labelled by the teacher
    augment_options: dict = field(default_factory=dict)  # more AugmentConfig fields, e.g. {"p_ngram": 0.1}
    augment_cache_dir: str | None = None  # keep jieba POS tags of the texts here (re-runs skip tagging)
    limit: int | None = None  # distil on the first N training examples only (dev and test stay whole)
    eval_limit: int | None = None  # score only the first N dev / test examples (quick runs, tests)
    cache_teacher: bool = True  # keep teacher outputs across epochs when augmentation is off
    teacher_cache_mb: int = 512  # hidden states/attention are cached only when they fit in this
    device: str | None = None  # None: cuda when available, else cpu
    resume: bool = False  # continue from out_dir/last.pt
    overwrite: bool = False  # start over in an out_dir that holds a run (else refused)

    def __post_init__(self) -> None:
        check_run_start(self)
        self.stage = Stage(self.stage)
        self.attention_loss = AttentionLossKind(self.attention_loss)
        if isinstance(self.optim, dict):
            self.optim = OptimConfig.from_dict(self.optim)
        if isinstance(self.loss_weights, dict):
            self.loss_weights = DistillLossWeights(**self.loss_weights)
        task = get_task(self.task)
        if self.data_dir is None and not task.embedded:
            raise ValueError(f"task {task.name} needs --data-dir (a folder with train.tsv, dev.tsv, test.tsv)")
        if task.kind is TaskKind.ner and self.student_tokenizer is None and self.student_init is None:
            # ERNIE-tiny keeps single-char input for NER "to align with the labels": one tag per token
            self.student_tokenizer = CHAR_TOKENIZER
        check_preset(self.student_preset)
        check_positive(self, ("subword_vocab_size", "eval_batch_size", "limit", "eval_limit", "teacher_cache_mb"))
        check_positive(self, ("steps_intermediate", "steps_prediction", "augment"), minimum=0)
        check_shared_settings(self)
        if Stage.intermediate in self.stage.stages() and self.steps_intermediate < 1:
            raise ValueError("the intermediate stage needs --steps-intermediate >= 1")
        if any(s.matches_logits for s in self.stage.stages()) and self.steps_prediction < 1:
            raise ValueError(f"the {self.stage.value} stage needs --steps-prediction >= 1")
        if self.lr_prediction is not None and not self.lr_prediction > 0:
            raise ValueError(f"lr_prediction must be positive, got {self.lr_prediction}")
        if self.augment and self.loss_weights.soft == 0:
            raise ValueError("augmented examples have no gold labels: --augment needs a soft-target weight > 0")
        self.augment_config()  # raises on a bad augmentation option

    def augment_config(self) -> AugmentConfig:
        kind = get_task(self.task).kind
        try:
            config = AugmentConfig(**{"num_aug": self.augment, "seed": self.optim.seed,
                                      **KIND_AUGMENT_DEFAULTS.get(kind, {}), **self.augment_options})
        except TypeError as err:  # an unknown option name
            raise ValueError(f"augment options {self.augment_options}: {err}") from None
        if kind is TaskKind.ner:
            check_ner_config(config)
        return config

    def stage_steps(self, stage: Stage) -> int:
        return self.steps_intermediate if stage is Stage.intermediate else self.steps_prediction

    def stage_lr(self, stage: Stage) -> float:
        return self.lr_prediction if stage.matches_logits and self.lr_prediction is not None else self.optim.lr



@dataclass
class GeneralDistillConfig:
    teacher: str  # any encoder checkpoint (its head is ignored)
    out_dir: str
    corpus: str | None = None  # UTF-8 text file, one text per line; None: the embedded People's Daily + reviews
    max_texts: int | None = None  # use the first N texts of the corpus
    student_preset: str | None = None  # None: student-small on CPU, ernie-tiny on CUDA
    student_init: str | None = None  # continue from this checkpoint
    student_tokenizer: str | None = None  # folder; None: the embedded-corpus subword tokenizer; "char": the teacher's
    subword_vocab_size: int = DEFAULT_VOCAB_SIZE
    layer_map: str = "tinybert"
    loss_weights: DistillLossWeights = field(default_factory=DistillLossWeights)
    attention_loss: AttentionLossKind = AttentionLossKind.kl
    per_layer_projection: bool = False
    steps: int = 1000
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-4, save_every=200))  # no dev evaluation
    max_len: int = 128
    device: str | None = None
    resume: bool = False  # continue from out_dir/last.pt
    overwrite: bool = False  # start over in an out_dir that holds a run (else refused)

    def __post_init__(self) -> None:
        check_run_start(self)
        self.attention_loss = AttentionLossKind(self.attention_loss)
        if isinstance(self.optim, dict):
            self.optim = OptimConfig.from_dict(self.optim)
        if isinstance(self.loss_weights, dict):
            self.loss_weights = DistillLossWeights(**self.loss_weights)
        check_preset(self.student_preset)
        check_positive(self, ("subword_vocab_size", "steps", "max_texts"))
        check_shared_settings(self)
