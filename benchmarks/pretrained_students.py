"""The pretrained student: general distillation from the pretrained teacher, then task distillation.

Issue 11, point 2. From one pretrained ``masked_lm`` teacher (``ernie-tiny pretrain``'s result):

    tokenizer   the student's subword tokenizer: ``--student-tokenizer DIR``, else trained once into
                OUT/tokenizer on the corpus (``--vocab-size``, ``--max-piece-chars``)
    general     ``distill-general``: ``--student-preset`` (student-small) learns the pretrained teacher's
                embeddings, hidden states and attention on the corpus (the embedded People's Daily +
                reviews, which ``ernie-tiny pretrain`` reads by default, or ``--corpus``), ``--general-steps``
    teacher     per task, the pretrained teacher fine-tuned on it: ``--task-teacher TASK=CKPT_DIR``; a task
                without one is fine-tuned here with benchmarks/pretrained_pipeline.py's settings (lr 5e-4,
                max_len 64, batch 32, seed 42; ``--teacher-steps`` 300, ``--teacher-limit``,
                ``--teacher-eval-every`` 100) into OUT/<task>/teacher-s42; NER's teacher keeps the pretrained
                teacher's char vocabulary (no ``--vocab-from-train``), which its char student reads
    rows        per task and seed, each one ``ernie_tiny.distill.task.distill`` run:
                distilled (general init)    joint distillation (layer-wise + prediction losses at every
                                            step, --augment copies) from the general-distilled student
                distilled (random init)     the same from a random ``--student-preset``
                labels-only (general init)  gold labels only (hard cross-entropy) from the general student

All rows share the tokenizer, steps, batch size, max length, lr, data (``--limit``) and seeds;
the distilled rows share the augmentation, temperature and loss weights. The labels-only row
cannot augment (an augmented copy has no gold label, only the teacher's soft targets).

Each stage lives in its own folder (OUT/tokenizer, OUT/general, OUT/<task>/<row>-s<seed>). One
finished with the same settings is reused; one cut short (``last.pt``, no ``metrics.json``)
resumes; one finished with other settings (defaults included: a default changed in the code since
counts) stops the script with a line saying which setting differs (delete that folder, or choose
another --out). So rerun the same command to continue.
Writes OUT/students.json, OUT/students.md (per task: the teacher's test accuracy, each row's dev
and test accuracy and retention = student test / teacher test, and whether the targets hold:
retention of ``distilled (general init)`` >= 97.4% (97% of the entity F1 for NER, issue 15), and it
beats ``labels-only (general init)``; and point 3's checks of the joint stage: that margin is >= 1
point on the mean of >= 3 seeds, and every seed's first dev evaluation is above what a constant
prediction scores) and OUT/students.png. ``--rows`` runs a subset of the rows. ``--tasks msra_ner``
needs ``--student-tokenizer char``.

The measurement (2000 general steps; the README's distillation setting: first 1500 train rows,
300 steps, augment 2, hard weight 0.5; the teachers fine-tuned by pretrained_pipeline.py)::

    nice -n 10 python benchmarks/pretrained_students.py \\
        --pretrained-teacher runs/pretrain/teacher-small-mlm-step2000 \\
        --task-teacher chnsenticorp_htl=runs/pipeline/chnsenticorp_htl/km2000-s42/best \\
        --task-teacher lcqmc=runs/pipeline/lcqmc/km2000-s42/best \\
        --general-steps 2000 --steps 300 --limit 1500 --augment 2 --hard-weight 0.5 \\
        --seeds 42,43,44 --threads 2 --out runs/students > runs/students.log 2>&1

The README's point-3 table adds ``--tasks chnsenticorp_htl,lcqmc,waimai_10k --rows
distilled-general,labels-only-general`` and a ``--task-teacher`` for waimai_10k.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark whose teacher settings we share
from finished_runs import finished_metrics, settings_difference  # noqa: E402
from pretrained_pipeline import (TASK_FOLDERS, Cell, finetune_values, finished_cell, mean, run_cell,  # noqa: E402
                                 run_in_folder)

GENERAL = "general"  # row keys ending in -general start from the general-distilled student
ROWS = {"distilled-general": "distilled (general init)", "distilled-random": "distilled (random init)",
        "labels-only-general": "labels-only (general init)"}
STAGE_WALL = "stage_wall_seconds"  # the key of each stage's wall time in its metrics.json
TARGET_RETENTION = 97.4  # % of the teacher's test score, for distilled (general init): issue 11
TARGET_RETENTION_BY_TASK = {"msra_ner": 97.0}  # issue 15's NER target (entity F1)
TARGET_MARGIN, TARGET_SEEDS = 1.0, 3  # point 3: distilled beats labels-only (general init) by >= 1 point, 3-seed mean
DEFAULT_TASKS = "chnsenticorp_htl,lcqmc"
# Every task a row can run: pretrained_pipeline.py's (whose teacher this script can fine-tune) and NER,
# whose teacher must be given (--task-teacher) and whose student reads chars (--student-tokenizer char).
TASKS = {**TASK_FOLDERS, "msra_ner": ("msra-ner", "msra_ner")}
TEACHER_SEED = 42  # the seed of the teachers pretrained_pipeline.py fine-tunes
GENERAL_SEED = 42  # one general-distilled student serves every seed of the rows
# Fields a saved config may differ in without changing the result.
NOT_COMPARED = frozenset({"out_dir", "resume", "device"})


# ---- settings: what each stage runs with, and whether a finished folder ran with them ----------

def finished_run(out_dir: str | Path, config: dict, recorded: dict | None = None,
                 config_class: type | None = None) -> dict | None:
    """The metrics.json of a run finished in ``out_dir`` with ``config`` (and these ``recorded`` top-level
    metrics fields); None when none finished there. A finished run with other settings is an error.

    With ``config_class`` the saved config is read through it first, so a field added to the class
    since the run finished counts as its default (the run behaved so); a default that changed
    since still differs, because a saved config holds every field it had.
    """
    metrics = finished_metrics(out_dir)
    if metrics is None:
        return None
    saved = metrics.get("config", {})
    if config_class is not None:
        try:
            saved = resolved(config_class, saved)
        except (TypeError, ValueError):
            pass  # a field removed or renamed since: compared as saved, so it shows as a difference
    difference = (settings_difference(config, saved, tuple(NOT_COMPARED))
                  or settings_difference(recorded or {}, metrics, tuple(NOT_COMPARED)))
    if difference:
        raise ValueError(f"{out_dir} holds a finished run with other settings ({difference}): delete the folder "
                         "or choose another --out")
    return metrics


def resolved(config_class: type, values: dict) -> dict:
    """``values`` as ``config_class`` resolves them, defaults included (plain values): what a finished run must
    have saved, so that a default changed in the code since then counts as another setting."""
    from ernie_tiny.training.state import plain

    return plain(config_class(**values))


def general_values(args: argparse.Namespace, tokenizer_dir: str) -> dict:
    """The GeneralDistillConfig fields of the general-distillation stage."""
    return {"teacher": args.pretrained_teacher, "out_dir": str(Path(args.out) / GENERAL), "corpus": args.corpus,
            "max_texts": args.general_max_texts, "student_preset": args.student_preset,
            "student_tokenizer": tokenizer_dir, "steps": args.general_steps, "max_len": args.max_len,
            "device": args.device,
            "optim": {"lr": args.lr, "batch_size": args.batch_size, "seed": GENERAL_SEED,
                      "save_every": args.save_every}}


def general_fingerprint(general_metrics: dict) -> dict:
    """What a general-init row records of the student it started from: the general run's settings."""
    return {k: v for k, v in general_metrics["config"].items() if k not in NOT_COMPARED}


def row_values(row: str, table_task: str, seed: int, args: argparse.Namespace, teacher_dir: str,
               tokenizer_dir: str, general_student: str) -> dict:
    """The DistillConfig fields of one row (plain values, compared with a finished run's saved config)."""
    task, folder = TASKS[table_task]
    from_general = row.endswith(GENERAL)
    base = {"teacher": teacher_dir, "task": task, "out_dir": str(Path(args.out) / table_task / f"{row}-s{seed}"),
            "data_dir": None if folder is None else str(Path(args.data_root) / folder),
            "student_preset": None if from_general else args.student_preset,
            "student_init": general_student if from_general else None, "student_tokenizer": tokenizer_dir,
            "steps_intermediate": 0, "steps_prediction": args.steps, "max_len": args.max_len,
            "limit": args.limit, "eval_limit": args.eval_limit, "device": args.device,
            "augment_cache_dir": str(Path(args.out) / "pos-cache"),
            "optim": {"lr": args.lr, "batch_size": args.batch_size, "seed": seed, "eval_every": args.eval_every,
                      "save_every": args.eval_every}}
    if row.startswith("labels-only"):
        return {**base, "stage": "prediction", "augment": 0, "loss_weights": {"soft": 0.0, "hard": 1.0}}
    weights = {"temperature": args.temperature, "hard": args.hard_weight,
               **dict.fromkeys(("embedding", "hidden", "attention"), args.feature_weight), **args.loss_weights}
    return {**base, **args.distill_options, "stage": "joint", "augment": args.augment, "loss_weights": weights}


def teacher_args(args: argparse.Namespace) -> argparse.Namespace:
    """pretrained_pipeline.py's fine-tuning settings, for a task teacher this script must make itself."""
    return argparse.Namespace(out=args.out, data_root=args.data_root, max_len=64, steps=args.teacher_steps, lr=5e-4,
                              batch_size=32, eval_every=min(args.teacher_eval_every, args.teacher_steps),
                              limit=args.teacher_limit, eval_limit=args.eval_limit, preset=None)


def teacher_values(table_task: str, args: argparse.Namespace) -> dict:
    """The FinetuneConfig fields of a task teacher made here: NER keeps the pretrained chars (its student reads them)."""
    cell = Cell(table_task, "teacher", args.pretrained_teacher, TEACHER_SEED)
    return finetune_values(cell, teacher_args(args), TASKS, vocab_from_train=not is_ner(table_task))


def parse_task_teachers(items: list[str], tasks: list[str]) -> dict[str, str]:
    """``TASK=CKPT_DIR`` items -> {task: folder}; each task once, each folder a checkpoint."""
    teachers: dict[str, str] = {}
    for item in items:
        task, sep, path = item.partition("=")
        if not sep or not path:
            raise ValueError(f"--task-teacher {item!r}: expected TASK=CHECKPOINT_DIR")
        if task not in tasks:
            raise ValueError(f"--task-teacher {item!r}: {task} is not in --tasks ({', '.join(tasks)})")
        if task in teachers:
            raise ValueError(f"--task-teacher {item!r}: a second teacher for {task}")
        if not (Path(path) / "config.json").is_file():
            raise ValueError(f"--task-teacher {item!r}: {path} is not a checkpoint folder (no config.json)")
        teachers[task] = path
    return teachers


def check_options(options: dict, config_class: type, option: str, reserved: frozenset[str] = frozenset()) -> None:
    """Refuse a field ``config_class`` does not have, or one the script sets itself (the rows must stay alike)."""
    from dataclasses import fields

    known = {f.name for f in fields(config_class)}
    for name in options:
        if name not in known:
            raise ValueError(f"{option}: {config_class.__name__} has no field {name!r}")
        if name in reserved:
            raise ValueError(f"{option}: {name} is set for every row alike; use its own option")


def json_object(text: str, option: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{option} {text!r}: not JSON ({err.msg})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{option} {text!r}: expected a JSON object")
    return value


# ---- the stages ----------------------------------------------------------------------------------

def tokenizer_difference(directory: Path, vocab_size: int, max_piece_chars: int, corpus: str | None) -> str | None:
    """How a trained tokenizer folder differs from the settings asked for; None when it matches."""
    training = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8")).get("training", {})
    wanted = {"vocab_size_requested": vocab_size, "max_piece_chars": max_piece_chars}
    difference = settings_difference(wanted, training)
    described = " ".join(training.get("corpus", []))
    if difference is None and not described.startswith(corpus or "embedded"):
        difference = f"corpus: trained on {described!r}, now {corpus or 'embedded'}"
    return difference


def ensure_tokenizer(args: argparse.Namespace, log: Callable[[str], None]) -> str:
    """The student tokenizer folder: ``--student-tokenizer`` ("char": the teacher's own chars), else
    OUT/tokenizer (trained here once)."""
    if args.student_tokenizer == "char":
        log("tokenizer: char (the pretrained teacher's char vocabulary)")
        return "char"
    if args.student_tokenizer is not None:
        if not (Path(args.student_tokenizer) / "tokenizer_config.json").is_file():
            raise ValueError(f"--student-tokenizer {args.student_tokenizer}: no tokenizer_config.json there "
                             "(make one with ernie-tiny segment train)")
        log(f"tokenizer: {args.student_tokenizer} (given)")
        return args.student_tokenizer
    directory = Path(args.out) / "tokenizer"
    if (directory / "tokenizer_config.json").is_file():
        difference = tokenizer_difference(directory, args.vocab_size, args.max_piece_chars, args.corpus)
        if difference:
            raise ValueError(f"{directory} holds a tokenizer with other settings ({difference}): delete it or "
                             "choose another --out")
        log(f"tokenizer: reused {directory}")
        return str(directory)
    from ernie_tiny.tokenization.subword import train_subword_tokenizer
    from ernie_tiny.tokenization.subword.sources import EMBEDDED, read_corpus_sources

    texts, described = read_corpus_sources([args.corpus or EMBEDDED])
    log(f"tokenizer: training {args.vocab_size} pieces on {'; '.join(described)} into {directory}")
    started = time.perf_counter()
    train_subword_tokenizer(texts, directory, args.vocab_size, corpus_description=described,
                            max_piece_chars=args.max_piece_chars)
    log(f"tokenizer: {time.perf_counter() - started:.0f} s")
    return str(directory)


def run_general(values: dict) -> dict:
    """General distillation into OUT/general."""
    from ernie_tiny.distill.config import GeneralDistillConfig
    from ernie_tiny.distill.general import distill_general

    return run_in_folder(values, GeneralDistillConfig, distill_general, STAGE_WALL)


def run_row(values: dict, recorded: dict) -> dict:
    """One task distillation; ``recorded`` goes into its metrics.json."""
    from ernie_tiny.distill.config import DistillConfig
    from ernie_tiny.distill.task import distill

    return run_in_folder(values, DistillConfig, distill, STAGE_WALL, recorded)


def task_teacher(table_task: str, given: dict[str, str], args: argparse.Namespace, log: Callable[[str], None]) -> str:
    """The fine-tuned teacher folder of a task: the one given, else fine-tuned here (or reused)."""
    if table_task in given:
        return given[table_task]
    values = teacher_values(table_task, args)
    metrics = finished_cell(values)
    if metrics is None:
        log(f"{table_task}: fine-tuning the pretrained teacher ({values['out_dir']}/run.log)")
        metrics = run_cell(values, args.threads)
        log(f"{table_task}: teacher {metrics['cell_wall_seconds']:.0f} s, load {metrics['load_average']}")
    else:
        log(f"{table_task}: teacher reused ({values['out_dir']})")
    return str(Path(values["out_dir"]) / "best")


# ---- the table -----------------------------------------------------------------------------------

def summarise(results: dict[tuple[str, str, int], dict], tasks: list[str],
              chance: dict[str, float] | None = None) -> dict:
    """Per task: the teacher's dev/test (x100), each row's mean over seeds and retention, and the targets.

    ``results`` maps (task, row, seed) to a distill run's metrics.json plus ``first_dev`` (the first
    dev evaluation, :func:`first_dev`); every row scores the same teacher on the same dev/test
    examples, so the teacher's scores come from any of them. Scores are each task's main metric
    (accuracy; entity F1 for NER). ``chance`` (x100) is what a constant prediction scores on dev
    (:func:`chance_dev`). Point 2's targets (retention, beats labels-only) make
    ``targets_hold``; point 3's (a margin of >= 1 point over >= 3 seeds, every seed's first dev
    evaluation above chance) make ``joint_targets_hold``.
    """
    chance = chance or {}
    summary: dict = {"tasks": {}}
    for task in tasks:
        runs = {row: [m for (t, r, _), m in sorted(results.items()) if t == task and r == row] for row in ROWS}
        done = [m for ms in runs.values() for m in ms]
        if not done:
            continue
        main = done[0]["main_metric"]
        entry: dict = {"metric": main, "target_retention": target_retention(task),
                       "teacher": {s: 100 * done[0]["teacher"][s][main] for s in ("dev", "test")}, "rows": {}}
        for row, ms in runs.items():
            if ms:
                entry["rows"][row] = {
                    "dev": mean([100 * m["student"]["dev"][main] for m in ms]),
                    "test": mean([100 * m["student"]["test"][main] for m in ms]),
                    "retention": mean([m["retention_pct"]["test"] for m in ms]),
                    "test_per_seed": [100 * m["student"]["test"][main] for m in ms],
                    "seeds": len(ms), "train_seconds": mean([m["train_seconds"] for m in ms]),
                    "first_dev_per_seed": [m["first_dev"] for m in ms if m.get("first_dev")]}
        distilled, labels_only = entry["rows"].get("distilled-general"), entry["rows"].get("labels-only-general")
        targets = {}
        if distilled:
            retention = distilled["retention"]
            targets["retention"] = {"value": retention, "holds": retention >= entry["target_retention"]}
        if distilled and labels_only:
            margin = distilled["test"] - labels_only["test"]
            targets["beats_labels_only"] = {"margin": margin, "holds": margin > 0}
        entry["targets"] = targets
        joint: dict = {}
        if distilled and labels_only:
            seeds = min(distilled["seeds"], labels_only["seeds"])
            joint["margin"] = {"margin": margin, "seeds": seeds,
                               "holds": margin >= TARGET_MARGIN and seeds >= TARGET_SEEDS}
        if distilled and task in chance and distilled["first_dev_per_seed"]:
            entry["chance_dev"] = chance[task]
            firsts = distilled["first_dev_per_seed"]
            joint["first_eval"] = {"steps": [f["step"] for f in firsts], "dev": [f["value"] for f in firsts],
                                   "chance": chance[task], "holds": all(f["value"] > chance[task] for f in firsts)}
        entry["joint_targets"] = joint
        summary["tasks"][task] = entry
    for key, count, name in (("targets", 2, "targets_hold"), ("joint_targets", 2, "joint_targets_hold")):
        checks = [t["holds"] for entry in summary["tasks"].values() for t in entry[key].values()]
        complete = len(summary["tasks"]) == len(tasks) and all(len(e[key]) == count for e in summary["tasks"].values())
        summary[name] = bool(checks) and complete and all(checks)
    return summary


def first_dev(out_dir: str | Path, metric: str) -> dict | None:
    """The run's first dev evaluation: ``{"step", "value"}`` (x100) from its metrics.jsonl; None before one."""
    from ernie_tiny.training.logging import read_metrics

    for record in read_metrics(Path(out_dir) / "metrics.jsonl"):
        if record.get("split") == "dev" and metric in record:
            return {"step": record["step"], "value": 100 * record[metric]}
    return None


def target_retention(table_task: str) -> float:
    """The retention target (% of the teacher's test score) of the distilled (general init) row."""
    return TARGET_RETENTION_BY_TASK.get(table_task, TARGET_RETENTION)


def is_ner(table_task: str) -> bool:
    """One tag per char: the student must read the teacher's chars, and chance is F1 0."""
    from ernie_tiny.tasks import TaskKind, get_task

    return get_task(TASKS[table_task][0]).kind is TaskKind.ner


def chance_dev(table_task: str, args: argparse.Namespace) -> float:
    """Chance on dev (x100), what a constant prediction scores: the share of the most common label;
    for NER 0, since tagging every char O (its most common tag) finds no entity (entity F1 0)."""
    from collections import Counter

    from ernie_tiny.tasks import load_splits

    if is_ner(table_task):
        return 0.0
    task, folder = TASKS[table_task]
    dev = load_splits(task, None if folder is None else Path(args.data_root) / folder, eval_limit=args.eval_limit)["dev"]
    return 100 * max(Counter(e.label for e in dev).values()) / len(dev)


def yes_no(holds: bool) -> str:
    return "yes" if holds else "**no**"


def markdown(summary: dict, header: str) -> str:
    """Per task: one line for the teacher, one per row (dev, test, retention, train s), then the targets."""
    lines = [header, ""]
    for task, entry in summary["tasks"].items():
        teacher = entry["teacher"]
        lines += [f"### {task} ({entry['metric']}, x100)", "",
                  "| row | dev | test | retention (test) | test per seed | train s |", "|---|---|---|---|---|---|",
                  f"| teacher (pretrained, fine-tuned) | {teacher['dev']:.2f} | {teacher['test']:.2f} | 100% | - | - |"]
        for row, cell in entry["rows"].items():
            per_seed = " / ".join(f"{v:.2f}" for v in cell["test_per_seed"])
            lines.append(f"| {ROWS[row]} | {cell['dev']:.2f} | {cell['test']:.2f} | {cell['retention']:.1f}% | "
                         f"{per_seed} | {cell['train_seconds']:.0f} |")
        lines.append("")
        targets = entry["targets"]
        if "retention" in targets:
            lines.append(f"- retention of distilled (general init) {targets['retention']['value']:.2f}% >= "
                         f"{entry['target_retention']:g}%: {yes_no(targets['retention']['holds'])}")
        if "beats_labels_only" in targets:
            lines.append(f"- distilled (general init) beats labels-only (general init): "
                         f"{targets['beats_labels_only']['margin']:+.2f} points, "
                         f"{yes_no(targets['beats_labels_only']['holds'])}")
        joint = entry["joint_targets"]
        if "margin" in joint:
            lines.append(f"- by >= {TARGET_MARGIN:g} point over >= {TARGET_SEEDS} seeds: {joint['margin']['margin']:+.2f}"
                         f" over {joint['margin']['seeds']} seed(s), {yes_no(joint['margin']['holds'])}")
        if "first_eval" in joint:
            first = joint["first_eval"]
            dev = " / ".join(f"{v:.2f} (step {s})" for v, s in zip(first["dev"], first["steps"]))
            lines.append(f"- first dev evaluation of distilled (general init) above chance ({first['chance']:.2f}, a "
                         f"constant prediction): {dev}, {yes_no(first['holds'])}")
        lines.append("")
    lines.append(f"Targets hold on every task: retention and beating labels-only {yes_no(summary['targets_hold'])}; "
                 f"the joint stage's margin and first evaluation {yes_no(summary['joint_targets_hold'])}. Rows: mean "
                 "over seeds of the dev-best step's checkpoint; retention = student test / teacher test, on the same "
                 "examples.")
    return "\n".join(lines)


def plot(summary: dict, path: Path, student: str) -> None:
    """Grouped bars per task: teacher and each row's test score; a dashed line at the retention target."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(summary["tasks"])
    names = ["teacher", *(r for r in ROWS if any(r in summary["tasks"][t]["rows"] for t in tasks))]
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(2.4 * len(tasks) + 2, 4.8), dpi=120)
    for i, name in enumerate(names):
        heights = [summary["tasks"][t]["teacher"]["test"] if name == "teacher"
                   else summary["tasks"][t]["rows"].get(name, {}).get("test", 0.0) for t in tasks]
        bars = ax.bar([k + i * width for k in range(len(tasks))], heights, width,
                      label="teacher (pretrained, fine-tuned)" if name == "teacher" else ROWS[name])
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    for k, task in enumerate(tasks):
        entry = summary["tasks"][task]
        target = entry["teacher"]["test"] * entry["target_retention"] / 100
        ax.hlines(target, k - width / 2, k + width * (len(names) - 0.5), colors="black", linestyles="dashed",
                  linewidth=0.8, label="retention target" if k == 0 else None)
    ax.set_xticks([k + width * (len(names) - 1) / 2 for k in range(len(tasks))],
                  [f"{t} ({summary['tasks'][t]['metric']})" for t in tasks])
    ax.set_ylabel("test score (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{student}: general-distilled vs random init, distilled vs labels only", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=3, fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ---- the command ---------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pretrained-teacher", required=True, help="masked_lm checkpoint of ernie-tiny pretrain")
    parser.add_argument("--task-teacher", action="append", default=[],
                        help="TASK=CKPT_DIR, the pretrained teacher fine-tuned on TASK (repeat per task); "
                             "a task without one is fine-tuned here")
    parser.add_argument("--tasks", default=DEFAULT_TASKS, help=f"comma-separated, of {', '.join(TASKS)}")
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--corpus", default=None, help="text file, one text per line (default: the embedded corpus)")
    parser.add_argument("--student-preset", default="student-small")
    parser.add_argument("--student-tokenizer", default=None, help="subword tokenizer folder [default: OUT/tokenizer, "
                                                                  "trained on the corpus once]")
    parser.add_argument("--vocab-size", type=int, default=50000, help="of the tokenizer trained into OUT/tokenizer")
    parser.add_argument("--max-piece-chars", type=int, default=16, help="of the tokenizer trained into OUT/tokenizer")
    parser.add_argument("--general-steps", type=int, default=2000)
    parser.add_argument("--general-max-texts", type=int, default=None, help="general distillation on the first N texts")
    parser.add_argument("--save-every", type=int, default=200, help="general distillation's last.pt saves")
    parser.add_argument("--teacher-steps", type=int, default=300, help="fine-tuning steps of a teacher made here")
    parser.add_argument("--teacher-limit", type=int, default=None, help="train rows of a teacher made here")
    parser.add_argument("--teacher-eval-every", type=int, default=100, help="dev evaluations of a teacher made here")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps of every student row")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=64)
    parser.add_argument("--augment", type=int, default=2, help="augmented copies per example (distilled rows)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--hard-weight", type=float, default=0.5, help="gold-label CE weight in distilled rows")
    parser.add_argument("--feature-weight", type=float, default=1.0,
                        help="weight of each embedding / hidden-state / attention term")
    parser.add_argument("--loss-weights", default="{}", help="JSON: more DistillLossWeights fields (distilled rows)")
    parser.add_argument("--distill-options", default="{}", help="JSON: more DistillConfig fields (distilled rows)")
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--limit", type=int, default=1500, help="train on the first N training rows")
    parser.add_argument("--eval-limit", type=int, default=None, help="score only the first N dev/test rows")
    parser.add_argument("--seeds", default="42")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {', '.join(ROWS)}")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/students")
    args = parser.parse_args(argv)
    args.tasks = [t for t in args.tasks.split(",") if t]
    unknown = [t for t in args.tasks if t not in TASKS]
    if unknown:
        parser.error(f"unknown tasks {unknown}; choose from {', '.join(TASKS)}")
    char_only = [t for t in args.tasks if is_ner(t)]
    if char_only and args.student_tokenizer != "char":
        parser.error(f"{', '.join(char_only)}: the student reads the teacher's chars (one tag per char); "
                     "add --student-tokenizer char")
    args.rows = [r for r in args.rows.split(",") if r]
    if not args.rows or any(r not in ROWS for r in args.rows):
        parser.error(f"--rows {','.join(args.rows)}: choose from {', '.join(ROWS)}")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s]
        args.loss_weights = json_object(args.loss_weights, "--loss-weights")
        args.distill_options = json_object(args.distill_options, "--distill-options")
    except ValueError as err:
        parser.error(str(err))
    if not (Path(args.pretrained_teacher) / "config.json").is_file():
        parser.error(f"--pretrained-teacher {args.pretrained_teacher}: not a checkpoint folder (no config.json)")
    return args


def measure(args: argparse.Namespace, log: Callable[[str], None]) -> dict:
    """All stages, reusing finished ones; writes students.json/.md after every row and students.png at the end."""
    import torch

    from ernie_tiny.distill.config import DistillConfig, GeneralDistillConfig
    from ernie_tiny.distill.losses import DistillLossWeights

    torch.set_num_threads(args.threads)
    check_options(args.loss_weights, DistillLossWeights, "--loss-weights")
    plain_args = argparse.Namespace(**{**vars(args), "distill_options": {}})
    set_here = frozenset(row_values("distilled-random", args.tasks[0], 0, plain_args, "", "", "")) | {"resume"}
    check_options(args.distill_options, DistillConfig, "--distill-options", set_here)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    teachers = parse_task_teachers(args.task_teacher, args.tasks)
    tokenizer_dir = ensure_tokenizer(args, log)
    values = general_values(args, tokenizer_dir)
    general = finished_run(values["out_dir"], resolved(GeneralDistillConfig, values), None, GeneralDistillConfig)
    if general is None:
        log(f"general distillation: {args.general_steps} steps ({values['out_dir']}/run.log)")
        general = run_general(values)
        log(f"general distillation: {general[STAGE_WALL]:.0f} s, load {general['load_average']}")
    else:
        log(f"general distillation: reused {values['out_dir']}")
    recorded = {"general_init": general_fingerprint(general)}
    header = (f"## {args.student_preset} from the pretrained teacher\n\nPretrained teacher {args.pretrained_teacher}; "
              f"general distillation {args.general_steps} steps on {args.corpus or 'the embedded corpus'} "
              f"({general['train_seconds']:.0f} s train); tokenizer {tokenizer_dir}; "
              f"every row {args.steps} steps, batch {args.batch_size}, max_len {args.max_len}, lr {args.lr}, "
              f"first {args.limit or 'all'} train rows, seeds {','.join(map(str, args.seeds))}; distilled rows: "
              f"joint, augment {args.augment}, T {args.temperature}, hard weight {args.hard_weight}, feature weight "
              f"{args.feature_weight}{', ' + json.dumps(args.loss_weights) if args.loss_weights else ''}"
              f"{', ' + json.dumps(args.distill_options) if args.distill_options else ''}.")
    results: dict[tuple[str, str, int], dict] = {}
    summary: dict = {}
    cells = [(task, row, seed) for task in args.tasks for row in args.rows for seed in args.seeds]
    chance = {task: chance_dev(task, args) for task in args.tasks}
    teacher_dirs: dict[str, str] = {}
    for index, (task, row, seed) in enumerate(cells, 1):
        if task not in teacher_dirs:
            teacher_dirs[task] = task_teacher(task, teachers, args, log)
        values = row_values(row, task, seed, args, teacher_dirs[task], tokenizer_dir, str(general["student_dir"]))
        row_recorded = recorded if row.endswith(GENERAL) else {}
        prefix = f"[{index}/{len(cells)}] {task} {ROWS[row]} seed {seed}"
        metrics = finished_run(values["out_dir"], resolved(DistillConfig, values), row_recorded, DistillConfig)
        status = "reused"
        if metrics is None:
            log(f"{prefix}: distilling ({values['out_dir']}/run.log)")
            metrics = run_row(values, row_recorded)
            status = f"{metrics[STAGE_WALL]:.0f} s, load {metrics['load_average']}"
        results[(task, row, seed)] = {**metrics, "first_dev": first_dev(values["out_dir"], metrics["main_metric"])}
        log(f"{prefix}: test {100 * metrics['student']['test'][metrics['main_metric']]:.2f}, retention "
            f"{metrics['retention_pct']['test']:.1f}% ({status})")
        summary = summarise(results, args.tasks, chance)
        summary["settings"] = vars(args)
        summary["general"] = {k: general[k] for k in ("student_dir", "steps", "texts", "train_seconds")}
        summary["teachers"] = teacher_dirs
        (out / "students.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
        teachers_line = "Task teachers: " + ", ".join(f"{t} {d}" for t, d in teacher_dirs.items()) + "."
        (out / "students.md").write_text(markdown(summary, f"{header}\n\n{teachers_line}") + "\n", encoding="utf-8")
    plot(summary, out / "students.png", args.student_preset)
    log(markdown(summary, f"{header}\n\n{teachers_line}"))
    return summary


def main() -> None:
    args = parse_args()
    try:
        measure(args, lambda line: print(line, flush=True))
    except ValueError as err:  # a bad setting or a folder run with other settings: one line
        raise SystemExit(f"pretrained_students: {err}") from None


if __name__ == "__main__":
    main()
