"""benchmarks/pretrained_students.py's helpers: the rows' settings, reuse of finished stages, the table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark_script import load_script


students = load_script("pretrained_students")


def checkpoint(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}", encoding="utf-8")
    return folder


def script_args(tmp_path: Path, *more: str):
    teacher = checkpoint(tmp_path / "mlm")
    return students.parse_args(["--pretrained-teacher", str(teacher), "--out", str(tmp_path / "out"),
                                "--seeds", "42,43", *more])


def test_every_row_shares_the_budget_and_only_the_init_and_objective_differ(tmp_path):
    from ernie_tiny.distill.config import DistillConfig, Stage

    args = script_args(tmp_path, "--loss-weights", '{"scale_by_t2": false}')
    rows = {row: students.row_values(row, "lcqmc", 43, args, "teacher/best", "tok", "general/student")
            for row in students.ROWS}
    shared = ("teacher", "task", "data_dir", "student_tokenizer", "steps_prediction", "max_len", "limit", "optim")
    for name in shared:
        assert len({json.dumps(values[name]) for values in rows.values()}) == 1, name
    assert rows["distilled-general"]["optim"]["seed"] == 43 and rows["distilled-general"]["data_dir"].endswith("lcqmc")
    assert len({values["out_dir"] for values in rows.values()}) == 3
    assert rows["distilled-general"]["student_init"] == rows["labels-only-general"]["student_init"] == "general/student"
    random_init = rows["distilled-random"]
    assert random_init["student_init"] is None and random_init["student_preset"] == "student-small"
    assert rows["distilled-general"]["loss_weights"] == rows["distilled-random"]["loss_weights"]
    assert rows["distilled-general"]["loss_weights"]["hard"] == 0.5
    assert rows["distilled-general"]["loss_weights"]["scale_by_t2"] is False
    labels_only = rows["labels-only-general"]
    assert labels_only["augment"] == 0 and labels_only["loss_weights"] == {"soft": 0.0, "hard": 1.0}
    assert rows["distilled-random"]["augment"] == 2
    configs = {row: DistillConfig(**values) for row, values in rows.items()}  # each is a valid run config
    assert configs["labels-only-general"].stage is Stage.prediction
    assert configs["distilled-general"].stage is Stage.joint


def test_a_finished_stage_is_reused_only_with_the_same_settings(tmp_path):
    values = {"teacher": "t", "out_dir": str(tmp_path / "run"), "steps": 10, "optim": {"lr": 5e-4, "seed": 42}}
    assert students.finished_run(values["out_dir"], values) is None  # nothing ran there
    saved = {**values, "out_dir": "elsewhere", "resume": True, "optim": {"lr": 5e-4, "seed": 42, "weight_decay": 0.01}}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({"config": saved, "general_init": {"steps": 5}}))
    assert students.finished_run(values["out_dir"], values, {"general_init": {"steps": 5}})["config"] == saved
    with pytest.raises(ValueError, match=r"optim.lr: ran with 0.0005, now 0.001"):
        students.finished_run(values["out_dir"], {**values, "optim": {"lr": 1e-3}})
    with pytest.raises(ValueError, match=r"general_init.steps: ran with 5, now 6"):  # a rerun general student
        students.finished_run(values["out_dir"], values, {"general_init": {"steps": 6}})


def test_a_default_changed_since_a_run_finished_counts_as_another_setting_a_field_added_since_does_not(tmp_path):
    from ernie_tiny.distill.config import DistillConfig

    args = script_args(tmp_path)
    values = students.row_values("distilled-random", "lcqmc", 42, args, "teacher/best", "tok", "general/student")
    wanted = students.resolved(DistillConfig, values)
    assert wanted["stage"] == "joint" and wanted["layer_map"] == "tinybert"  # defaults, as plain values
    assert wanted["loss_weights"]["soft"] == 1.0 and wanted["optim"]["seed"] == 42
    out_dir = Path(values["out_dir"])
    out_dir.mkdir(parents=True)
    saved = json.loads(json.dumps(wanted))
    (out_dir / "metrics.json").write_text(json.dumps({"config": saved}))
    assert students.finished_run(out_dir, wanted) is not None
    saved["loss_weights"]["soft"] = 0.5  # the default was 0.5 when that run finished
    (out_dir / "metrics.json").write_text(json.dumps({"config": saved}))
    with pytest.raises(ValueError, match=r"loss_weights.soft: ran with 0.5, now 1.0"):
        students.finished_run(out_dir, wanted, None, DistillConfig)
    saved["loss_weights"]["soft"] = 1.0
    del saved["loss_weights"]["feature_warmup"]  # a run from before that field existed ran without a warm-up
    (out_dir / "metrics.json").write_text(json.dumps({"config": saved}))
    assert students.finished_run(out_dir, wanted, None, DistillConfig) is not None
    with pytest.raises(ValueError, match=r"loss_weights.feature_warmup: ran with None, now 0.0"):
        students.finished_run(out_dir, wanted)  # read without the class: the missing field differs
    with pytest.raises(ValueError, match=r"loss_weights.feature_warmup: ran with 0.0, now 0.3"):
        students.finished_run(out_dir, students.resolved(DistillConfig, {
            **values, "loss_weights": {**values["loss_weights"], "feature_warmup": 0.3}}), None, DistillConfig)


def test_task_teachers_are_checked_before_anything_runs(tmp_path):
    good = checkpoint(tmp_path / "htl")
    tasks = ["chnsenticorp_htl", "lcqmc"]
    assert students.parse_task_teachers([f"chnsenticorp_htl={good}"], tasks) == {"chnsenticorp_htl": str(good)}
    for items, message in (([str(good)], "expected TASK=CHECKPOINT_DIR"), ([f"ocnli={good}"], "not in --tasks"),
                           ([f"lcqmc={good}", f"lcqmc={good}"], "a second teacher"),
                           ([f"lcqmc={tmp_path}"], "not a checkpoint folder")):
        with pytest.raises(ValueError, match=message):
            students.parse_task_teachers(items, tasks)


def test_bad_options_stop_with_one_line(tmp_path, capsys):
    for more in (["--tasks", "lcqmc,imdb"], ["--loss-weights", "[1]"], ["--distill-options", "{bad"],
                 ["--rows", "distilled-general,labels-only"]):
        with pytest.raises(SystemExit):
            script_args(tmp_path / str(len(more[1])), *more)
    err = capsys.readouterr().err
    assert "unknown tasks ['imdb']" in err and "--rows distilled-general,labels-only: choose from" in err
    from ernie_tiny.distill.config import DistillConfig
    from ernie_tiny.distill.losses import DistillLossWeights

    with pytest.raises(ValueError, match="no field 'warmup'"):
        students.check_options({"warmup": 1}, DistillLossWeights, "--loss-weights")
    with pytest.raises(ValueError, match="max_len is set for every row"):
        students.check_options({"max_len": 32}, DistillConfig, "--distill-options", frozenset({"max_len"}))
    students.check_options({"layer_map": "uniform"}, DistillConfig, "--distill-options", frozenset({"max_len"}))


def test_the_general_stage_and_a_trained_tokenizer_are_matched_on_their_settings(tmp_path):
    from ernie_tiny.distill.config import GeneralDistillConfig

    args = script_args(tmp_path, "--general-steps", "300")
    values = students.general_values(args, "out/tokenizer")
    assert GeneralDistillConfig(**values).steps == 300 and values["out_dir"].endswith("general")
    folder = tmp_path / "tok"
    folder.mkdir()
    training = {"vocab_size_requested": 50000, "max_piece_chars": 16, "corpus": ["embedded: People's Daily (...)"]}
    (folder / "tokenizer_config.json").write_text(json.dumps({"kind": "subword", "training": training}))
    assert students.tokenizer_difference(folder, 50000, 16, None) is None
    assert "vocab_size_requested: ran with 50000, now 20000" in students.tokenizer_difference(folder, 20000, 16, None)
    assert "corpus" in students.tokenizer_difference(folder, 50000, 16, "my/corpus.txt")


def distill_metrics(student_test: float, teacher_test: float = 0.80) -> dict:
    """The fields of a distill run's metrics.json that the table reads."""
    return {"main_metric": "accuracy", "teacher": {"dev": {"accuracy": 0.82}, "test": {"accuracy": teacher_test}},
            "student": {"dev": {"accuracy": student_test + 0.01}, "test": {"accuracy": student_test}},
            "retention_pct": {"test": 100 * student_test / teacher_test}, "train_seconds": 60.0}


def test_the_table_states_retention_and_both_targets_per_task(tmp_path):
    results = {("lcqmc", "distilled-general", 42): distill_metrics(0.79),
               ("lcqmc", "distilled-general", 43): distill_metrics(0.77),
               ("lcqmc", "distilled-random", 42): distill_metrics(0.70),
               ("lcqmc", "labels-only-general", 42): distill_metrics(0.76),
               ("chnsenticorp_htl", "distilled-general", 42): distill_metrics(0.70),
               ("chnsenticorp_htl", "labels-only-general", 42): distill_metrics(0.72)}
    summary = students.summarise(results, ["chnsenticorp_htl", "lcqmc"])
    lcqmc = summary["tasks"]["lcqmc"]
    assert lcqmc["teacher"]["test"] == pytest.approx(80.0)
    assert lcqmc["rows"]["distilled-general"]["test"] == pytest.approx(78.0)
    assert lcqmc["rows"]["distilled-general"]["retention"] == pytest.approx(97.5)  # (98.75 + 96.25) / 2
    assert lcqmc["rows"]["distilled-general"]["test_per_seed"] == pytest.approx([79.0, 77.0])
    assert lcqmc["targets"]["retention"]["holds"] and lcqmc["targets"]["beats_labels_only"]["holds"]
    htl = summary["tasks"]["chnsenticorp_htl"]
    assert not htl["targets"]["retention"]["holds"]  # 87.5%
    assert htl["targets"]["beats_labels_only"]["margin"] == pytest.approx(-2.0)
    assert summary["targets_hold"] is False
    table = students.markdown(summary, "## header")
    assert "| distilled (general init) | 79.00 | 78.00 | 97.5% | 79.00 / 77.00 | 60 |" in table
    assert "retention of distilled (general init) 87.50% >= 97.4%: **no**" in table
    assert "-2.00 points, **no**" in table and "retention and beating labels-only **no**" in table
    only_lcqmc = students.summarise({k: v for k, v in results.items() if k[0] == "lcqmc"}, ["lcqmc"])
    assert only_lcqmc["targets_hold"] is True
    partial = students.summarise({k: v for k, v in results.items() if k[0] == "lcqmc"}, ["chnsenticorp_htl", "lcqmc"])
    assert partial["targets_hold"] is False  # a task without results is no pass
    students.plot(summary, tmp_path / "students.png", "student-small")
    assert (tmp_path / "students.png").stat().st_size > 1000


def test_the_joint_targets_need_a_point_over_three_seeds_and_a_first_evaluation_above_chance():
    def run(test: float, first: float | None):
        return {**distill_metrics(test), "first_dev": None if first is None else {"step": 50, "value": first}}

    results = {**{("lcqmc", "distilled-general", s): run(0.78, 60.0) for s in (42, 43, 44)},
               **{("lcqmc", "labels-only-general", s): run(0.765, 51.0) for s in (42, 43, 44)}}
    summary = students.summarise(results, ["lcqmc"], {"lcqmc": 50.0})
    joint = summary["tasks"]["lcqmc"]["joint_targets"]
    assert joint["margin"]["margin"] == pytest.approx(1.5) and joint["margin"]["seeds"] == 3
    assert joint["first_eval"]["dev"] == [60.0, 60.0, 60.0] and summary["joint_targets_hold"] is True
    table = students.markdown(summary, "## header")
    assert "+1.50 over 3 seed(s), yes" in table and "60.00 (step 50)" in table
    # two seeds are not enough, however large the margin
    two = {k: v for k, v in results.items() if k[2] != 44}
    assert students.summarise(two, ["lcqmc"], {"lcqmc": 50.0})["joint_targets_hold"] is False
    # one seed at chance on its first evaluation fails the target
    flat = {**results, ("lcqmc", "distilled-general", 43): run(0.78, 50.0)}
    assert students.summarise(flat, ["lcqmc"], {"lcqmc": 50.0})["tasks"]["lcqmc"]["joint_targets"]["first_eval"][
        "holds"] is False
    # a margin under a point fails
    close = {**results, **{("lcqmc", "labels-only-general", s): run(0.775, 51.0) for s in (42, 43, 44)}}
    assert students.summarise(close, ["lcqmc"], {"lcqmc": 50.0})["joint_targets_hold"] is False


def test_first_dev_reads_the_first_evaluation_and_chance_is_the_majority_share(tmp_path):
    lines = [{"step": 10, "split": "train", "loss": 1.0}, {"step": 50, "split": "dev", "accuracy": 0.61},
             {"step": 100, "split": "dev", "accuracy": 0.7}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    assert students.first_dev(tmp_path, "accuracy") == {"step": 50, "value": pytest.approx(61.0)}
    assert students.first_dev(tmp_path / "none", "accuracy") is None
    data = tmp_path / "data" / "lcqmc"
    data.mkdir(parents=True)
    for split, labels in (("train", [0, 1]), ("dev", [1, 1, 0, 1])):
        (data / f"{split}.tsv").write_text("text_a\ttext_b\tlabel\n" + "".join(
            f"问{k}\t答{k}\t{y}\n" for k, y in enumerate(labels)), encoding="utf-8")
    args = students.parse_args(["--pretrained-teacher", str(checkpoint(tmp_path / "mlm")),
                                "--data-root", str(tmp_path / "data"), "--rows", "distilled-general"])
    assert args.rows == ["distilled-general"]
    assert students.chance_dev("lcqmc", args) == pytest.approx(75.0)
    assert students.chance_dev("msra_ner", args) == 0.0  # all-O finds no entity; reads no data


def test_ner_rows_read_the_teachers_chars_and_keep_97_percent(tmp_path, capsys):
    with pytest.raises(SystemExit):
        script_args(tmp_path / "a", "--tasks", "msra_ner")
    assert "msra_ner: the student reads the teacher's chars" in capsys.readouterr().err
    args = script_args(tmp_path / "b", "--tasks", "msra_ner", "--student-tokenizer", "char")
    assert students.ensure_tokenizer(args, lambda line: None) == "char"
    values = students.row_values("distilled-general", "msra_ner", 42, args, "teacher", "char", "general/student")
    assert values["task"] == "msra-ner" and values["data_dir"].endswith("msra_ner")
    assert values["student_tokenizer"] == "char"
    assert students.parse_task_teachers([], ["lcqmc", "msra_ner"]) == {}  # both teachers are made here
    made = students.teacher_values("msra_ner", script_args(tmp_path / "c", "--tasks", "msra_ner", "--student-tokenizer",
                                                           "char", "--teacher-steps", "3000", "--teacher-eval-every",
                                                           "500", "--eval-limit", "3000"))
    assert made["task"] == "msra-ner" and made["data_dir"].endswith("msra_ner") and made["max_steps"] == 3000
    assert made["vocab_from_train"] is False  # the char student reads the pretrained teacher's own ids
    assert made["optim"]["eval_every"] == 500 and made["eval_limit"] == 3000
    assert made["out_dir"].endswith("msra_ner/teacher-s42")
    assert students.teacher_values("lcqmc", args)["vocab_from_train"] is True  # classification keeps the pipeline's
    teacher = checkpoint(tmp_path / "ner-teacher")
    assert students.parse_task_teachers([f"msra_ner={teacher}"], ["msra_ner"]) == {"msra_ner": str(teacher)}

    def ner(f1: float) -> dict:
        return {"main_metric": "f1", "teacher": {"dev": {"f1": 0.8}, "test": {"f1": 0.8}},
                "student": {"dev": {"f1": f1}, "test": {"f1": f1}}, "retention_pct": {"test": 100 * f1 / 0.8},
                "train_seconds": 60.0}

    results = {("msra_ner", "distilled-general", 42): ner(0.7780), ("msra_ner", "labels-only-general", 42): ner(0.7)}
    summary = students.summarise(results, ["msra_ner"], {"msra_ner": 0.0})
    entry = summary["tasks"]["msra_ner"]
    assert entry["metric"] == "f1" and entry["target_retention"] == 97.0
    assert entry["targets"]["retention"]["holds"]  # 97.25%: above issue 15's 97%, below issue 11's 97.4%
    assert "97.25% >= 97%: yes" in students.markdown(summary, "## header")
