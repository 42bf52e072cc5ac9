"""Studies, run folders and `selab runs`: statistics by hand, reports on metrics written in the
CSV logger's format, and real studies of tiny runs (each cell a `selab fit` + `selab test`
subprocess) with the local, Ray and submitit launchers."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from jsonargparse import Namespace
from scipy import stats as scipy_stats

from conftest import REPO
from fakedata import write_imagefolder
from selab import runs, study
from selab.study import cells as cellplan
from selab.study import identity as cell_identity
from selab.study import launchers, results
from selab.study.cli import keep_study_file
from selab.study.spec import StudyError, load_study, parse_study

# -- the study file ----------------------------------------------------------------------------


def write_study(folder: Path, text: str, configs=("base.yaml", "se.yaml")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in configs:
        (folder / name).write_text("{}\n")
    path = folder / "study.yaml"
    path.write_text(textwrap.dedent(text))
    return path


GOOD = """
    base: base.yaml
    arms: {plain: [], se: [se.yaml, {model.backbone.init_args.attention: se}]}
    seeds: [0, 1]
"""


def test_a_study_file_parses_with_its_defaults(tmp_path):
    s = load_study(write_study(tmp_path / "pooling", GOOD))
    assert s.name == "pooling" and s.out == Path("logs/studies/pooling")
    assert list(s.arms) == ["plain", "se"] and s.baseline == "plain" and s.seeds == [0, 1]
    assert s.base == [tmp_path / "pooling/base.yaml"]
    assert s.arms["se"].configs == [tmp_path / "pooling/se.yaml"]
    assert s.arms["se"].overrides == {"model.backbone.init_args.attention": "se"}
    assert s.metric == "test/acc_top1" and s.units == "percent" and s.scale == 100
    assert s.quantities == ["test/acc_top1"]


def test_the_vgg_study_file():
    s = load_study(REPO / "configs/studies/vgg_small/study.yaml")
    assert list(s.arms) == ["plain", "skip", "dense", "ca"] and s.seeds == [0, 1, 2]
    assert s.base == [REPO / "configs/studies/vgg_small/recipe.yaml"]
    assert s.arms["plain"].configs == []
    assert s.arms["dense"].configs == [REPO / "configs/studies/vgg_small/dense.yaml"]
    published = {name: arm.published for name, arm in s.arms.items()}
    assert published == {"plain": 60.1, "skip": 66.9, "dense": 69.7, "ca": 61.2}
    assert s.baseline == "plain" and s.units == "percent"
    assert s.quantities == ["val/acc_top1 last 5 mean", "val/acc_top1 final"]


@pytest.mark.parametrize(
    "text, message",
    [
        (GOOD + "    seed: 3\n", "unknown key 'seed'; a study file has: arms, base, baseline"),
        ("arms: {a: []}\nseeds: 0\n", "'seeds' must be a list of non-negative integers, got 0"),
        ("arms: {a: []}\nseeds: [1, 1]\n", "'seeds' repeats a seed"),
        ("arms: []\nseeds: [0]\n", "'arms' must map each arm's name"),
        ("arms: {a: [missing.yaml]}\nseeds: [0]\n", "config 'missing.yaml' not found"),
        ("arms: {a: [3]}\nseeds: [0]\n", "arm 'a': 3 is neither a config file nor a mapping"),
        ("arms: {a/b: []}\nseeds: [0]\n", "arm name 'a/b' must be a plain folder name"),
        ("arms: {a: []}\nseeds: [0]\nbaseline: b\n", "baseline 'b' is not an arm; arms: a"),
        ("arms: {a: []}\nseeds: [0]\npublished: {b: 1}\n", "published number for 'b', which is not an arm"),
        ("arms: {a: []}\nseeds: [0]\npublished: {a: high}\n", "published number of 'a' must be a number"),
        ("arms: {a: []}\nseeds: [0]\nunits: '%'\n", "'units' must be one of percent, raw"),
        ("arms: {a: []}\nseeds: [0]\nlast_epochs: 0\n", "'last_epochs' must be a positive integer"),
        ("arms: {a: []}\nseeds: [0]\nmetric: accuracy\n", "'metric' must be a logged metric name"),
        ("arms: {a: [}\n", "not valid YAML (line 1)"),
        ("- a\n", "a study file is a mapping"),
    ],
)  # fmt: skip
def test_a_bad_study_file_is_one_line_naming_the_file(tmp_path, text, message):
    path = write_study(tmp_path / "s", text)
    with pytest.raises(StudyError) as error:
        load_study(path)
    assert message in str(error.value) and str(error.value).startswith(str(path))
    assert "\n" not in str(error.value)


def test_the_study_file_is_kept_and_a_different_one_refused(tmp_path):
    path = write_study(tmp_path / "s", GOOD)
    out = tmp_path / "out"
    kept = keep_study_file(load_study(path), out)
    assert kept.read_text() == path.read_text()
    path.write_text(path.read_text() + "# a comment changes nothing\n")
    keep_study_file(load_study(path), out)  # the same study
    path.write_text(path.read_text().replace("[0, 1]", "[0, 1, 2]"))
    with pytest.raises(StudyError, match="holds a different study than .*choose another folder"):
        keep_study_file(load_study(path), out)
    assert "[0, 1]" in kept.read_text()  # untouched


# -- cells: commands and what their folders say ------------------------------------------------


def test_cell_commands(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_study(write_study(tmp_path / "s", GOOD + "    overrides: {trainer.max_epochs: 3}\n"))
    plan = cellplan.plan(s, Path("out"), ["data.root=/tmp/x"], ["--trainer.fast_dev_run", "true"])
    assert [c.label for c in plan] == ["plain/seed_0", "se/seed_0", "plain/seed_1", "se/seed_1"]
    se = plan[1]
    assert se.folder == Path("out/se/seed_0") and se.action == cellplan.NEW
    (fit, fit_argv), (test, test_argv) = se.steps
    assert (fit, test) == ("fit", "test")
    assert fit_argv[:6] == ["fit", "--config", "s/base.yaml", "--config", "s/se.yaml", "--trainer.enable_progress_bar=false"]  # fmt: skip
    assert fit_argv[6:10] == [
        "--trainer.max_epochs=3",
        "--model.backbone.init_args.attention=se",
        "--data.root=/tmp/x",
        "--seed_everything=0",
    ]
    loggers = json.loads(fit_argv[10].split("=", 1)[1])
    assert [lg["class_path"] for lg in loggers] == [
        "lightning.pytorch.loggers.TensorBoardLogger",
        "selab.loggers.CSVLogger",
    ]
    for logger in loggers:
        init = logger["init_args"]
        assert runs.run_dir(init["save_dir"], init["name"], init["version"]) == se.folder
    assert fit_argv[-2:] == ["--trainer.fast_dev_run", "true"]
    assert test_argv == ["test", *fit_argv[1:], "--ckpt_path=out/se/seed_0/checkpoints/last.ckpt"]
    line = cellplan.command_line(fit_argv)
    assert line.startswith("selab fit --config s/base.yaml") and "'--trainer.logger=[{" in line


def write_metrics(folder: Path, val: list[float], test: float | None = None, test_loss=None):
    """metrics.csv as selab.loggers.CSVLogger writes it: a row per log call, lr rows, train rows,
    a validation row per epoch, then the test row."""
    rows, step = [], 0
    for epoch, acc in enumerate(val):
        step += 2
        rows.append({"epoch": None, "lr-SGD": 0.1, "step": step - 2})
        rows.append({"epoch": epoch, "step": step - 1, "train/loss": 2.0 / (epoch + 1)})
        rows.append({"epoch": epoch, "step": step - 1, "val/acc_top1": acc, "val/loss": 1 - acc})
    if test is not None:
        rows.append(
            {"epoch": len(val), "step": step, "test/acc_top1": test, "test/loss": test_loss}
        )
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / runs.METRICS, index=False)


def test_what_a_cell_folder_says_to_do(tmp_path):
    folder = tmp_path / "a/seed_0"
    assert cellplan.decide(folder) == cellplan.NEW
    write_metrics(folder, [0.1])
    assert cellplan.decide(folder) == cellplan.NEW  # nothing to resume from
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints/last.ckpt").write_bytes(b"x")
    assert cellplan.decide(folder) == cellplan.RESUME
    runs.update_status(folder, "fit", state="running", pid=os.getpid(), host=socket.gethostname())
    assert cellplan.decide(folder) == cellplan.RUNNING  # this very process: alive
    runs.update_status(folder, "fit", state="finished")
    assert cellplan.decide(folder) == cellplan.TEST  # the fit ended: only the test is missing
    write_metrics(folder, [0.1], test=0.2)
    assert cellplan.decide(folder) == cellplan.DONE


def test_gpus_or_threads_are_split_between_parallel_cells():
    assert launchers.slot_environments(1, ["0", "1"], 8) == [{}]
    assert launchers.slot_environments(2, ["0", "1", "2", "3"], 8) == [
        {"CUDA_VISIBLE_DEVICES": "0,1"},
        {"CUDA_VISIBLE_DEVICES": "2,3"},
    ]
    assert launchers.slot_environments(3, ["0", "1"], 8) == [
        {"CUDA_VISIBLE_DEVICES": "0"},
        {"CUDA_VISIBLE_DEVICES": "1"},
        {"CUDA_VISIBLE_DEVICES": "0"},
    ]
    assert launchers.slot_environments(2, [], 5) == [{"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}] * 2  # fmt: skip


@pytest.mark.parametrize("parallel", [1, 2])
def test_fail_fast_stops_launching_cells(monkeypatch, parallel):
    """The cells themselves are stubbed here: what is tested is the launcher's bookkeeping. Cell
    'b' fails at once; the cells after it take a second, so by the time a slot is free again the
    failure has been seen and nothing new starts."""
    started = []

    def fake_run_cell(spec, stop=None):
        started.append(spec["arm"])
        if spec["arm"] not in "ab":
            time.sleep(1.0)
        return {"arm": spec["arm"], "seed": 0, "ok": spec["arm"] != "b", "log": "x"}

    monkeypatch.setattr(launchers, "run_cell", fake_run_cell)
    specs = [{"arm": arm, "seed": 0, "folder": "f", "steps": []} for arm in "abcdef"]
    results = []
    launchers.LocalLauncher(parallel).run(specs, True, results.append)
    # a and b; in parallel the cells already taken by a free slot (c, perhaps d), never e or f
    assert {"a", "b"} <= set(started) <= set("abcd"[: 2 * parallel])
    assert {r["arm"]: r["ok"] for r in results}["b"] is False
    started.clear()
    launchers.LocalLauncher(parallel).run(specs, False, results.append)
    assert sorted(started) == list("abcdef")  # without --fail-fast every cell runs


def test_the_slurm_launcher_submits_one_job_per_cell_and_cancels_the_rest_on_failure(
    monkeypatch, tmp_path
):
    """submitit's debug executor runs each job in this process when its result is asked for, so
    the bookkeeping is tested here without SLURM (the end-to-end run is a slow test)."""
    pytest.importorskip("submitit", reason="submitit is not installed (pip install -e '.[slurm]')")
    ran = []

    def fake_run_cell(spec, stop=None):
        ran.append((spec["arm"], os.environ.get("SUBMITIT_DEBUG_JOB_ID") is not None))
        return {"arm": spec["arm"], "seed": 0, "ok": spec["arm"] != "b", "log": "x"}

    monkeypatch.setattr(launchers, "run_cell", fake_run_cell)
    specs = [{"arm": arm, "seed": 0, "folder": "f", "steps": []} for arm in "abc"]
    launcher = launchers.SlurmLauncher(tmp_path / "submitit", cpus=2, parameters={"timeout_min": 30}, cluster="debug")  # fmt: skip
    results = []
    launcher.run(specs, True, results.append)
    assert ran == [("a", True), ("b", True)]  # each inside a submitit job; c cancelled after b
    assert [(r["arm"], r["ok"]) for r in results] == [("a", True), ("b", False)]
    ran.clear()
    launcher.run(specs, False, results.append)
    assert [arm for arm, _ in ran] == list("abc")


@pytest.mark.parametrize("setting, problem", [
    ("no_such=1", "Unknown executor 'no' in parameter 'no_such'."),
    ("timeout_min=soon", 'Parameter "timeout_min" expected type'),
    ("slurm_no_such=1", "Unknown argument 'no_such' for executor 'slurm'"),
])  # fmt: skip
def test_a_wrong_slurm_parameter_is_one_line_before_anything_is_written(
    tmp_path, monkeypatch, capsys, setting, problem
):
    pytest.importorskip("submitit", reason="submitit is not installed (pip install -e '.[slurm]')")
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path / "s", GOOD)
    argv = ["run", str(path), "--out", "out", "--launcher", "slurm", "--submitit-cluster", "local"]
    assert study.main([*argv, "--slurm", setting]) == 2
    (err,) = capsys.readouterr().err.splitlines()
    assert err.startswith(f"error: --slurm: {problem}")
    assert err.endswith("submitit's shared parameters are name, timeout_min, mem_gb, nodes, cpus_per_task, gpus_per_node, tasks_per_node, stderr_to_stdout; SLURM's own take the slurm_ prefix (e.g. slurm_partition)")  # fmt: skip
    assert not Path("out").exists()


@pytest.mark.parametrize("launcher, module", [("ray", "ray"), ("slurm", "submitit")])
def test_a_missing_extra_is_named(monkeypatch, capsys, tmp_path, launcher, module):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as when not installed
    path = write_study(tmp_path / "s", GOOD)
    assert study.main(["run", str(path), "--launcher", launcher, "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: --launcher {launcher} needs the '{launcher}' extra: pip install -e '.[{launcher}]' "
        f"(or pip install 'selab[{launcher}]')"
    )


# -- statistics --------------------------------------------------------------------------------

ARM = {0: 0.9212, 1: 0.9187, 2: 0.9240, 3: 0.9301}
BASE = {0: 0.9125, 1: 0.9141, 2: 0.9098, 3: 0.9180, 4: 0.9150}  # seed 4 has no partner


def test_mean_and_t_interval_by_hand():
    values = list(ARM.values())
    summary = study.summarize(values)
    mean = sum(values) / 4
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / 3)
    half = 3.182446305284263 * std / math.sqrt(4)  # t(0.975, 3) from a t table
    assert summary["n"] == 4 and summary["mean"] == pytest.approx(mean)
    assert summary["std"] == pytest.approx(std)
    assert summary["ci_low"] == pytest.approx(mean - half) and summary["ci_high"] == pytest.approx(
        mean + half
    )
    assert (summary["min"], summary["max"]) == (0.9187, 0.9301)
    one = study.summarize([0.5])
    assert one["mean"] == 0.5 and math.isnan(one["std"]) and math.isnan(one["ci_low"])


def test_paired_difference_by_hand_and_by_scipy():
    diff = study.paired_difference(ARM, BASE)
    d = [ARM[s] - BASE[s] for s in range(4)]
    mean = sum(d) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 3)
    half = 3.182446305284263 * sd / 2
    assert diff["n"] == 4 and diff["mean"] == pytest.approx(mean)
    assert (diff["ci_low"], diff["ci_high"]) == pytest.approx((mean - half, mean + half))
    paired = scipy_stats.ttest_rel([ARM[s] for s in range(4)], [BASE[s] for s in range(4)])
    interval = paired.confidence_interval(0.95)
    assert (diff["ci_low"], diff["ci_high"]) == pytest.approx((interval.low, interval.high))


# -- the report --------------------------------------------------------------------------------

REPORT_STUDY = """
    arms: {plain: [], se: []}
    seeds: [0, 1, 2]
    metric: val/acc_top1
    last_epochs: 2
    other_metrics: [test/acc_top1]
    published: {plain: 50.0, se: 60.0}
"""
VAL = {  # (arm, seed) -> val/acc_top1 per epoch; the test accuracy is the last epoch's
    ("plain", 0): [0.30, 0.40, 0.50],
    ("plain", 1): [0.32, 0.44, 0.52],
    ("plain", 2): [0.31, 0.41, 0.47],
    ("se", 0): [0.35, 0.50, 0.56],
    ("se", 1): [0.30, 0.48, 0.60],
}


@pytest.fixture
def fabricated_study(tmp_path):
    """Five finished cells; se/seed_2 was interrupted after one epoch."""
    out = tmp_path / "out"
    for (arm, seed), val in VAL.items():
        write_metrics(runs.run_dir(out, arm, f"seed_{seed}"), val, test=val[-1])
    write_metrics(out / "se/seed_2", [0.33])
    (out / "se/seed_2/checkpoints").mkdir()
    (out / "se/seed_2/checkpoints/last.ckpt").write_bytes(b"x")
    runs.update_status(out / "se/seed_2", "fit", state="running", pid=2**22 + 1, host=socket.gethostname())  # fmt: skip
    s = parse_study(yaml.safe_load(textwrap.dedent(REPORT_STUDY)), default_name="fab")
    return s, out


def test_report_statistics_equal_a_hand_computation(fabricated_study):
    s, out = fabricated_study
    paths = results.write_report(s, out)
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == [
        "cells.csv",
        "results.csv",
        "results.md",
        "results.png",
    ]  # fmt: skip; and no temporary file left behind
    cells = pd.read_csv(paths["cells"])
    assert cells[["arm", "seed", "status", "epochs"]].values.tolist() == [
        ["plain", 0, "finished", 3], ["se", 0, "finished", 3],
        ["plain", 1, "finished", 3], ["se", 1, "finished", 3],
        ["plain", 2, "finished", 3], ["se", 2, "interrupted", 1],
    ]  # fmt: skip
    table = pd.read_csv(paths["results"]).set_index(["quantity", "arm"])
    for quantity, value in (
        ("val/acc_top1 last 2 mean", lambda v: 100 * (v[-1] + v[-2]) / 2),
        ("val/acc_top1 final", lambda v: 100 * v[-1]),
        ("test/acc_top1", lambda v: 100 * v[-1]),
    ):
        plain = {seed: value(VAL[("plain", seed)]) for seed in (0, 1, 2)}
        se = {seed: value(VAL[("se", seed)]) for seed in (0, 1)}
        row = table.loc[(quantity, "plain")]
        assert row["n"] == 3 and row["mean"] == pytest.approx(sum(plain.values()) / 3)
        low, high = scipy_stats.t.interval(0.95, 2, loc=row["mean"], scale=scipy_stats.sem(list(plain.values())))  # fmt: skip
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))
        compared = quantity.startswith("val/acc_top1")  # the study's metric, not other_metrics
        if compared:
            assert row["published"] == 50.0
            assert row["diff published"] == pytest.approx(row["mean"] - 50)
        else:
            assert math.isnan(row["published"]) and math.isnan(row["diff published"])
        assert math.isnan(row["diff"])  # the baseline
        row = table.loc[(quantity, "se")]
        assert row["n"] == 2 and row["paired n"] == 2  # the interrupted cell does not count
        paired = scipy_stats.ttest_rel([se[0], se[1]], [plain[0], plain[1]])
        interval = paired.confidence_interval(0.95)
        assert row["diff"] == pytest.approx((se[0] - plain[0] + se[1] - plain[1]) / 2)
        assert (row["diff ci_low"], row["diff ci_high"]) == pytest.approx(
            (interval.low, interval.high)
        )
        if compared:
            assert row["diff published"] == pytest.approx(row["mean"] - 60)
    text = paths["markdown"].read_text()
    assert "## val/acc_top1 last 2 mean" in text and "5 of 6 cells finished" in text
    words = " ".join(text.split())
    assert (
        "| plain | 3 | 45.67 | 2.08 | [40.50, 50.84] | 44.00 | 48.00 | 0: 45.00, 1: 48.00, 2: 44.00 | - |" in words
    )  # fmt: skip
    assert "| se | 2 | interrupted | 1 | - | 33.00 | - | - |" in words  # listed, not counted


def test_report_command_on_a_study_folder(fabricated_study, capsys):
    s, out = fabricated_study
    assert study.main(["report", str(out)]) == 2  # no study.yaml yet
    assert "has no study.yaml; pass the study file with --study FILE" in capsys.readouterr().err
    study_file = out.parent / "fab.yaml"
    study_file.write_text(textwrap.dedent(REPORT_STUDY))
    assert study.main(["report", str(out), "--study", str(study_file)]) == 0
    assert (out / "study.yaml").read_text() == study_file.read_text()
    assert study.main(["report", str(out)]) == 0  # now from the copy
    assert "# Study out" in capsys.readouterr().out  # named after the folder


# -- run folders -------------------------------------------------------------------------------


def test_pinned_versions_and_csv_twins(tmp_path):
    (tmp_path / "exp/version_3").mkdir(parents=True)
    (tmp_path / "exp/version_7").mkdir()
    tb = Namespace(class_path="lightning.pytorch.loggers.TensorBoardLogger",
                   init_args=Namespace(save_dir=str(tmp_path), name="exp", version=None))  # fmt: skip
    loggers = runs.with_csv_twin(tb)
    assert [lg.class_path for lg in loggers] == [tb.class_path, "selab.loggers.CSVLogger"]
    assert runs.with_csv_twin(loggers) == loggers  # a twin already there: unchanged
    assert runs.with_csv_twin(None) is None and runs.with_csv_twin(False) is False
    runs.pin_logger_versions(loggers)
    assert [lg.init_args.version for lg in loggers] == [8, 8]
    assert runs.next_version(tmp_path, "new") == 0
    resumed = runs.with_csv_twin(tb)  # a resumed run: its version chosen, the twin follows
    resumed[0].init_args.version = 3
    resumed[1].init_args.version = None
    runs.pin_logger_versions(resumed)
    assert [lg.init_args.version for lg in resumed] == [3, 3]


def test_run_states(tmp_path):
    here = socket.gethostname()
    finished = tmp_path / "a/version_0"
    runs.update_status(finished, "fit", state="finished", seconds=3725.0, argv=["fit", "--config", "c/resnet20.yaml"])  # fmt: skip
    write_metrics(finished, [0.2, 0.6, 0.5])
    failed = tmp_path / "a/version_1"
    runs.update_status(failed, "fit", state="failed", exception="ValueError: bad")
    killed = tmp_path / "a/version_2"
    runs.update_status(killed, "fit", state="running", pid=2**22 + 1, host=here)
    running = tmp_path / "a/version_3"
    runs.update_status(running, "fit", state="running", pid=os.getpid(), host=here)
    elsewhere = tmp_path / "a/version_4"
    runs.update_status(elsewhere, "fit", state="running", pid=1, host="another-host")
    old = tmp_path / "a/version_10"  # no status.json: done when it reached max_epochs
    write_metrics(old, [0.1, 0.2])
    (old / runs.CONFIG).write_text("seed_everything: 5\ntrainer: {max_epochs: 2}\n")
    unknown = tmp_path / "b/version_0"
    write_metrics(unknown, [0.1])
    states = {str(p.relative_to(tmp_path)): runs.run_state(p) for p in runs.find_runs(tmp_path)}
    assert states == {
        "a/version_0": "finished", "a/version_1": "failed", "a/version_2": "interrupted",
        "a/version_3": "running", "a/version_4": "running", "a/version_10": "finished",
        "b/version_0": "unknown",
    }  # fmt: skip
    table = runs.runs_table(tmp_path, "a/*")
    assert table["run"].tolist()[:2] == ["a/version_0", "a/version_1"]
    first = table.iloc[0]
    assert first["config"] == "resnet20" and first["epochs"] == 3
    assert first["best val/acc_top1"] == 0.6 and first["final val/acc_top1"] == 0.5
    assert first["wall time"] == "1:02:05"
    last = table.iloc[-1]
    assert last["run"] == "a/version_10" and last["seed"] == 5


def test_a_failed_predict_does_not_make_a_finished_run_failed(tmp_path):
    run = tmp_path / "exp/version_0"
    runs.update_status(run, "fit", state="finished", pid=11, epochs=2)
    runs.update_status(run, "test", state="finished", pid=12)
    runs.update_status(run, "predict", state="failed", pid=13, exception="DataError: broken.jpg")
    assert runs.read_status(run)["last"] == "predict"
    assert runs.run_state(run) == "finished"
    runs.update_status(run, "fit", state="failed", pid=14, exception="KeyboardInterrupt")
    assert runs.run_state(run) == "failed"  # training again, and that failed


def test_a_failed_command_is_recorded_once_and_for_the_right_attempt(tmp_path):
    run = tmp_path / "cell"
    runs.update_status(run, "fit", state="failed", pid=11, exception="ValueError: bad lr", epochs=3)
    runs.mark_failed(run, "fit", 1, ["fit"], pid=11)  # the process recorded its own exception
    assert runs.read_status(run)["fit"]["exception"] == "ValueError: bad lr"
    runs.mark_failed(run, "fit", 2, ["fit", "--x"], pid=12)  # a later attempt died at parse
    assert runs.read_status(run)["fit"] == {
        "state": "failed", "ended": runs.read_status(run)["fit"]["ended"],
        "exception": "exit status 2", "returncode": 2, "argv": ["fit", "--x"], "pid": 12,
        "host": socket.gethostname(),
    }  # fmt: skip
    runs.update_status(run, "fit", replace=True, state="running", pid=13, epochs=1)
    runs.mark_failed(run, "fit", -9, ["fit"], pid=13)  # killed while it ran
    record = runs.read_status(run)["fit"]
    assert record["exception"] == "signal 9" and record["epochs"] == 1
    assert runs.run_state(run) == "failed"


def test_runs_command(tmp_path, capsys):
    float32_noise = float(np.float32(0.15))  # 0.15000000596046448, as metrics.csv holds it
    write_metrics(tmp_path / "exp/version_0", [0.25, float32_noise], test=0.5)
    write_metrics(tmp_path / "exp/version_1", [0.125])
    argv = [
        "fit",
        "--config",
        "configs/cifar10/resnet20.yaml",
        "--config",
        "configs/debug/limit.yaml",
    ]
    runs.update_status(tmp_path / "exp/version_1", "fit", state="finished", argv=argv)
    assert runs.main([str(tmp_path)]) == 0
    out = " ".join(capsys.readouterr().out.split())  # runs of spaces squeezed
    assert "| exp/version_0 | finished | - | - | 2 | 25.00% | 15.00% | 50.00% | - | - |" in out
    # a debug preset is not part of the config, as it is not part of the run folder's name
    assert "| exp/version_1 | finished | resnet20 | - | 1 | 12.50% | 12.50% | - | - | - |" in out
    assert runs.main([str(tmp_path), "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()  # JSON Lines: one object per run
    records = [json.loads(line) for line in lines]
    assert records[0] == {
        "run": "exp/version_0", "status": "finished", "config": None, "seed": None,
        "epochs": 2, "best_val_acc_top1": 0.25, "final_val_acc_top1": 0.15,
        "test_acc_top1": 0.5, "wall_time": None, "time_left": None,
    }  # fmt: skip
    assert records[1]["config"] == "resnet20" and len(records) == 2
    assert runs.main([str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_a_cli_run_records_its_status_and_logs_both_loggers_into_one_folder(tiny_run):
    status = runs.read_status(tiny_run.log_dir)  # test_predict may add a predict record
    assert status["fit"]["state"] == "finished" and status["test"]["state"] == "finished"
    assert status["fit"]["pid"] == os.getpid() and status["fit"]["epochs"] == 2
    assert status["fit"]["seconds"] > 0
    metrics = runs.read_metrics(tiny_run.log_dir)  # the CSV twin of the config's TensorBoardLogger
    assert runs.epochs_done(metrics) == 2 and runs.has_test_results(tiny_run.log_dir)
    assert runs.final_value(metrics, "test/acc_top1") == pytest.approx(
        float(tiny_run.test.trainer.callback_metrics["test/acc_top1"])
    )
    assert runs.run_state(tiny_run.log_dir) == "finished"
    assert runs.find_runs(tiny_run.logs) == [tiny_run.log_dir]


def test_selab_command_dispatches_study_and_runs(tmp_path, capsys):
    from selab.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["runs", str(tmp_path)])
    assert exit_.value.code == 0 and f"no runs under {tmp_path}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["study", "run", str(tmp_path / "missing.yaml")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"error: study file {tmp_path / 'missing.yaml'} not found\n"


# -- real studies: each cell a `selab fit` and a `selab test` subprocess -------------------------

BASE_CONFIG = """
seed_everything: 0
trainer:
  max_epochs: 2
  limit_train_batches: 2
  log_every_n_steps: 1
  enable_model_summary: false
model:
  backbone:
    class_path: selab.models.resnet20
  optimizer:
    class_path: torch.optim.SGD
    init_args: {lr: 0.05, momentum: 0.9}
  lr_scheduler: null
data:
  dataset: imagefolder
  root: IMAGES
  num_workers: 0
  batch_size: 10
"""
KILLER = '''
import os, signal
from pathlib import Path
from lightning.pytorch import Callback

class KillOnce(Callback):
    """SIGKILL this run in the middle of its second epoch, once (as a crash or `kill -9` would)."""

    def __init__(self, marker: str, cell: str):
        self.marker, self.cell = Path(marker), cell

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        here = Path(trainer.log_dir)
        if f"{here.parent.name}/{here.name}" != self.cell or self.marker.exists():
            return
        if trainer.current_epoch == 1 and batch_idx == 1:
            self.marker.write_text("killed")
            os.kill(os.getpid(), signal.SIGKILL)
'''


@pytest.fixture
def tiny_study(tmp_path, monkeypatch):
    """A study folder with a tiny imagefolder dataset, run from ``tmp_path``."""
    images = tmp_path / "images"
    write_imagefolder(images)
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "base.yaml").write_text(BASE_CONFIG.replace("IMAGES", str(images)))
    (folder / "se.yaml").write_text("model: {backbone: {init_args: {attention: se}}}\n")
    (tmp_path / "killer.py").write_text(KILLER)
    (folder / "kill.yaml").write_text(
        "trainer:\n  callbacks:\n    - class_path: killer.KillOnce\n"
        f"      init_args: {{marker: {tmp_path / 'killed'}, cell: se/seed_1}}\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))  # fmt: skip
    return folder


def run_study(*args: str) -> subprocess.CompletedProcess:
    """``selab study ...`` as a user types it (the console script, in its own process)."""
    return subprocess.run(
        [sys.executable, "-m", "selab", "study", *args], capture_output=True, text=True, timeout=900
    )


def test_a_failing_cell_is_reported_and_the_others_finish(tiny_study, capsys):
    """Two cells at a time (each in its own process); the 'broken' arm names an attention that
    does not exist."""
    (tiny_study / "study.yaml").write_text(
        "base: base.yaml\nseeds: [0]\n"
        "arms: {plain: [], broken: [{model.backbone.init_args.attention: no_such_attention}]}\n"
    )
    code = study.main(["run", "study/study.yaml", "--parallel", "2", "--out", "out", "--", "--trainer.max_epochs=1"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1, out
    failure = re.search(r"FAILED: broken/seed_0: fit exited with status (\d+); see out/broken/seed_0/run.log", out)  # fmt: skip
    assert failure, out
    assert "1 cell(s) failed: broken/seed_0 (out/broken/seed_0/run.log)" in out
    assert "no_such_attention" in Path("out/broken/seed_0/run.log").read_text()
    failed = runs.read_status("out/broken/seed_0")["fit"]
    assert failed["state"] == "failed" and failed["exception"] == f"exit status {failure.group(1)}"
    assert runs.run_state("out/plain/seed_0") == "finished"
    table = pd.read_csv("out/results.csv").set_index("arm")
    assert table.loc["plain", "n"] == 1 and table.loc["broken", "n"] == 0
    metrics = runs.read_metrics("out/plain/seed_0")
    assert table.loc["plain", "mean"] == pytest.approx(
        100 * runs.final_value(metrics, "test/acc_top1")
    )
    assert runs.epochs_done(metrics) == 1  # the arguments after -- reached the cell


def cell_numbers(folder) -> dict:
    metrics = runs.read_metrics(folder)
    return {
        "val": runs.epoch_values(metrics, "val/acc_top1").tolist(),
        "val_loss": runs.epoch_values(metrics, "val/loss").tolist(),
        "test": runs.final_value(metrics, "test/acc_top1"),
        "test_loss": runs.final_value(metrics, "test/loss"),
    }


@pytest.mark.slow
def test_a_killed_study_resumes_only_what_is_missing_and_gives_the_same_table(tiny_study):
    (tiny_study / "study.yaml").write_text(
        "base: base.yaml\narms: {plain: [], se: [se.yaml, kill.yaml]}\nseeds: [0, 1]\n"
        "metric: val/acc_top1\n"
        "last_epochs: 2\nother_metrics: [test/acc_top1, test/loss]\n"
    )
    first = run_study("run", "study/study.yaml", "--out", "out")
    assert first.returncode == 1, first.stdout + first.stderr
    assert "FAILED: se/seed_1: fit exited with status -9; see out/se/seed_1/run.log" in first.stdout
    assert first.stdout.count("done: ") == 3
    killed = Path("out/se/seed_1")
    assert runs.last_checkpoint(killed) and not runs.has_test_results(killed)
    assert runs.read_status(killed)["fit"]["exception"] == "signal 9"
    finished = {
        p: p.read_bytes() for p in Path("out").glob("*/seed_*/metrics.csv") if p.parent != killed
    }
    assert len(finished) == 3

    second = run_study("run", "study/study.yaml", "--out", "out")
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.count("finished, skipped") == 3
    assert "[4/4] se/seed_1: resuming from last.ckpt" in second.stdout
    assert "--ckpt_path=out/se/seed_1/checkpoints/last.ckpt" in second.stdout
    assert all(p.read_bytes() == text for p, text in finished.items())  # not rerun
    assert runs.read_status(killed)["fit"]["state"] == "finished"

    # The same cell never interrupted (the marker is there, so it is not killed again).
    reference = run_study("run", "study/study.yaml", "--out", "reference", "--arms", "se", "--seeds", "1")  # fmt: skip
    assert reference.returncode == 0, reference.stdout + reference.stderr
    resumed, uninterrupted = cell_numbers(killed), cell_numbers("reference/se/seed_1")
    assert len(resumed["val"]) == 2
    for key, value in uninterrupted.items():  # resuming from last.ckpt changed nothing
        assert resumed[key] == pytest.approx(value, rel=1e-6), key
    table = pd.read_csv("out/cells.csv")
    row = table[(table["arm"] == "se") & (table["seed"] == 1)].iloc[0]
    assert row["test/acc_top1"] == pytest.approx(100 * uninterrupted["test"])
    summary = pd.read_csv("out/results.csv").set_index(["quantity", "arm"])
    assert summary.loc[("val/acc_top1 final", "se"), "n"] == 2


def assert_one_finished_cell(out: Path, launcher_pid: int) -> None:
    cell = out / "plain/seed_0"
    assert runs.has_test_results(cell) and runs.run_state(cell) == "finished"
    assert (cell / "config.yaml").is_file() and runs.last_checkpoint(cell)
    status = runs.read_status(cell)
    assert status["test"]["state"] == "finished"
    # Started by a Ray worker or a submitit job, not by the process that ran `selab study`.
    assert status["fit"]["ppid"] != launcher_pid and status["test"]["ppid"] != launcher_pid
    table = pd.read_csv(out / "results.csv")
    assert table["n"].tolist() == [1]


# Starting a local Ray instance takes most of a minute of CPU: with the slow tests (make test-all).
@pytest.mark.slow
def test_ray_launcher_on_a_local_ray_instance(tiny_study, monkeypatch):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    (tiny_study / "study.yaml").write_text("base: base.yaml\narms: {plain: []}\nseeds: [0]\n")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        code = study.main(["run", "study/study.yaml", "--out", "out", "--launcher", "ray", "--", "--trainer.max_epochs=1"])  # fmt: skip
        assert ray.is_initialized()  # the launcher used the instance it found
    finally:
        ray.shutdown()
    assert code == 0
    assert_one_finished_cell(Path("out"), os.getpid())


# submitit's local executor starts a job process per cell: with the slow tests (make test-all).
@pytest.mark.slow
def test_slurm_launcher_through_submitits_local_executor(tiny_study):
    pytest.importorskip("submitit", reason="submitit is not installed (pip install -e '.[slurm]')")
    (tiny_study / "study.yaml").write_text("base: base.yaml\narms: {plain: []}\nseeds: [0]\n")
    code = study.main(["run", "study/study.yaml", "--out", "out", "--launcher", "slurm", "--submitit-cluster", "local", "--slurm", "timeout_min=30", "--", "--trainer.max_epochs=1"])  # fmt: skip
    assert code == 0
    assert_one_finished_cell(Path("out"), os.getpid())
    assert any(Path("out/submitit").glob("*_result.pkl"))  # submitit ran it as a job
    shutil.rmtree("out/submitit")


# -- what a cell was run with --------------------------------------------------------------------


def test_a_cell_identity_is_its_configs_content_and_arguments(tmp_path):
    from selab.study.identity import CellIdentity, content_hash, first_difference

    config = tmp_path / "recipe.yaml"
    config.write_text("trainer:\n  max_epochs: 20\n")
    before = content_hash(config)
    config.write_text("# a comment\ntrainer: {max_epochs: 20}\n")
    assert content_hash(config) == before  # the parsed content counts, not its layout

    def build(settings=(), extra=()):
        return CellIdentity.build("plain", 0, [config], {"trainer.max_epochs": 20}, list(settings), list(extra))  # fmt: skip

    real = build(["data.root=/a", "data.dataset=imagefolder"])
    assert first_difference(real, build(["data.root=/b", "data.dataset=imagefolder"])) is None
    smoke = build(["data.root=/a", "data.dataset=imagefolder"], ["--trainer.max_epochs", "1"])
    assert first_difference(smoke, real) == (
        "it ran with arguments after -- `--trainer.max_epochs 1`, which this command does not give"
    )
    assert (
        smoke.differences_from_study() == "--set data.dataset=imagefolder -- --trainer.max_epochs 1"
    )
    assert first_difference(real, build(["data.dataset=cifar10"])) == (
        "it ran with --set `data.dataset=imagefolder`, this command gives `data.dataset=cifar10`"
    )
    config.write_text("trainer: {max_epochs: 1}\n")
    assert first_difference(real, build(["data.dataset=imagefolder"])) == (
        "config recipe.yaml has changed since the cell ran"
    )


def test_a_cell_run_with_other_arguments_is_never_counted(tmp_path, monkeypatch, capsys):
    """A finished cell recorded with `-- --trainer.max_epochs 1` is refused by the command without
    them, dry run included; --rerun moves it aside (kept) instead of deleting it."""
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path / "s", GOOD)
    s = load_study(path)
    smoke = cellplan.plan(s, Path("out"), [], ["--trainer.max_epochs", "1"], ["plain"], [0])[0]
    cell_identity.write(smoke.folder, smoke.identity, smoke.fit_args())
    write_metrics(smoke.folder, [0.1], test=0.1)
    keep_study_file(s, Path("out"))
    for dry in ([], ["--dry-run"]):
        assert study.main(["run", str(path), "--out", "out", "--arms", "plain", "--seeds", "0", *dry]) == 2  # fmt: skip
        err = capsys.readouterr().err
        assert err == (
            "error: plain/seed_0 in out cannot be reused: it ran with arguments after -- "
            "`--trainer.max_epochs 1`, which this command does not give; pass another --out, or "
            "--rerun to run it again (the old cell is moved to out/replaced)\n"
        )
    # the same arguments: finished, skipped
    assert study.main(["run", str(path), "--out", "out", "--arms", "plain", "--seeds", "0", "--dry-run", "--", "--trainer.max_epochs", "1"]) == 0  # fmt: skip
    assert "plain/seed_0: finished, skipped" in capsys.readouterr().out
    old = (smoke.folder / "metrics.csv").read_bytes()
    plan = cellplan.plan(s, Path("out"), arms=["plain"], seeds=[0])
    moved = cellplan.replace(plan[0], Path("out"))
    assert moved.parent == Path("out/replaced/plain") and moved.name.startswith("seed_0-")
    assert (moved / "metrics.csv").read_bytes() == old and not smoke.folder.exists()
    assert plan[0].action == cellplan.NEW and [n for n, _ in plan[0].steps] == ["fit", "test"]


def test_a_fit_stopped_before_its_first_checkpoint_is_moved_aside_not_logged_beside(
    tiny_study, capsys
):
    """A cell folder with an aborted fit's configs, events and metrics but no last.ckpt starts
    anew in a clean folder; the old files are kept under replaced/."""
    (tiny_study / "study.yaml").write_text("base: base.yaml\narms: {plain: []}\nseeds: [0]\n")
    cell = Path("out/plain/seed_0")
    cell.mkdir(parents=True)
    stale = {
        "config.yaml": "trainer: {max_epochs: 99}\n",
        "metrics.csv": "epoch,step,val/acc_top1\n0,1,0.123456\n",
        "events.out.tfevents.1.host.1.0": "old events",
        runs.RUN_LOG: "# an earlier fit\n",
    }
    for name, text in stale.items():
        (cell / name).write_text(text)
    argv = ["run", "study/study.yaml", "--out", "out", "--", "--trainer.max_epochs=1"]
    assert study.main([*argv[:4], "--dry-run", *argv[4:]]) == 0
    assert "plain/seed_0: new; the files of a fit stopped before" in capsys.readouterr().out
    assert all((cell / name).read_text() == text for name, text in stale.items())  # dry run

    assert study.main(argv) == 0
    out = capsys.readouterr().out
    (moved,) = Path("out/replaced/plain").iterdir()
    assert (
        f"plain/seed_0: files of a fit stopped before its first checkpoint moved to {moved}" in out
    )
    assert moved.name.startswith("seed_0-")
    assert {p.name: p.read_text() for p in moved.iterdir()} == stale  # kept as they were
    assert runs.has_test_results(cell) and runs.read_status(cell)["fit"]["state"] == "finished"
    assert "0.123456" not in (cell / "metrics.csv").read_text()
    assert "an earlier fit" not in (cell / runs.RUN_LOG).read_text()
    assert not (cell / "events.out.tfevents.1.host.1.0").exists()  # fit's and test's own only
    assert len(list(cell.glob(runs.EVENTS_GLOB))) == 2
    assert len(list(cell.glob("config*.yaml"))) == 2  # fit's config.yaml, test's beside it


def test_the_report_labels_smoke_cells_and_keeps_them_from_published_numbers(tmp_path):
    s = parse_study(yaml.safe_load(textwrap.dedent(REPORT_STUDY)), default_name="fab")
    out = tmp_path / "out"
    for seed in (0, 1):
        cell = cellplan.plan(s, out, ["data.root=/x"], ["--trainer.max_epochs=1"], ["plain"], [seed])[0]  # fmt: skip
        cell.identity.recipe = {"max_epochs": 3}
        cell_identity.write(cell.folder, cell.identity, cell.fit_args())
        write_metrics(cell.folder, [0.4], test=0.4)
    cells, curves = results.collect(s, out)
    plain = cells[cells["arm"] == "plain"].set_index("seed")
    assert plain.loc[0, "arguments"] == "-- --trainer.max_epochs=1"
    assert plain.loc[0, "flags"] == "short: 1 of the recipe's 3 epochs"
    summary = results.summarise(s, cells)
    row = summary.set_index(["quantity", "arm"]).loc[("test/acc_top1", "plain")]
    assert row["n"] == 2 and row["mean"] == pytest.approx(40) and row["short cells"] == 2
    assert row["diff published"] is None or math.isnan(row["diff published"])
    text = results.markdown(s, cells, summary, curves)
    assert "- `plain` is not set against its published 50.00: 2 of its finished cells trained less than the recipe." in text  # fmt: skip
    assert "after every epoch" not in text  # one validation each: no curves table
    assert "- `plain/seed_0` ran with arguments beyond the study file: `-- --trainer.max_epochs=1`." in text  # fmt: skip


def test_plateaus_and_divergence_are_flagged(tmp_path):
    """Fabricated metrics: one cell at chance (10 classes: <= 11%) for all its epochs, one that
    left it after two, one whose loss became NaN."""
    s = parse_study(yaml.safe_load(textwrap.dedent(REPORT_STUDY)), default_name="fab")
    out = tmp_path / "out"
    curves = {("plain", 0): [0.10, 0.105, 0.1], ("plain", 1): [0.10, 0.11, 0.45], ("se", 0): [0.3, 0.1, 0.1]}  # fmt: skip
    for (arm, seed), val in curves.items():
        folder = cellplan.cell_dir(out, arm, seed)
        write_metrics(folder, val, test=val[-1])
        runs.update_status(folder, "fit", state="finished", classes=10)
    metrics = cellplan.cell_dir(out, "se", 0) / "metrics.csv"
    text = metrics.read_text().splitlines()
    text[-2] = text[-2].replace("0.9,", "nan,")  # val/loss of the last epoch
    metrics.write_text("\n".join(text) + "\n")
    assert runs.diverged(metrics.parent) and not runs.diverged(cellplan.cell_dir(out, "plain", 1))
    cells, curves = results.collect(s, out)
    table = cells.set_index(["arm", "seed"])
    assert table.loc[("plain", 0), "chance epochs"] == 3
    assert table.loc[("plain", 0), "flags"] == "never left chance"
    assert table.loc[("plain", 1), "chance epochs"] == 2 and table.loc[("plain", 1), "flags"] == ""
    assert (
        table.loc[("se", 0), "chance epochs"] == 2 and table.loc[("se", 0), "flags"] == "diverged"
    )
    # cells.csv keeps whole epochs as integers beside the missing cells (plain 2, se 1 and 2)
    written = csv.DictReader(io.StringIO(cells.to_csv(index=False)))
    assert [row["chance epochs"] for row in written] == ["3", "2", "2", "", "", ""]
    summary = results.summarise(s, cells)
    assert summary.set_index(["quantity", "arm"]).loc[("test/acc_top1", "plain"), "seeds"] == "0: 10.00*, 1: 45.00"  # fmt: skip
    text = results.markdown(s, cells, summary, curves)
    assert "- `plain/seed_0` (finished): never left chance, 3 of 3 epochs at chance level." in text
    assert text.endswith(
        "## val/acc_top1 after every epoch (%)\n\n"
        "|   epoch |   plain s0 |   plain s1 |   se s0 |\n"
        "|--------:|-----------:|-----------:|--------:|\n"
        "|       1 |      10.00 |      10.00 |   30.00 |\n"
        "|       2 |      10.50 |      11.00 |   10.00 |\n"
        "|       3 |      10.00 |      45.00 |   10.00 |\n"
    )


def fabricate_cell(study_, out, arm, seed, val, settings=(), extra=()):
    """A finished cell as `selab study run` leaves it: cell.json, metrics, status."""
    cell = cellplan.plan(study_, Path(out), list(settings), list(extra), [arm], [seed])[0]
    cell_identity.write(cell.folder, cell.identity, cell.fit_args())
    write_metrics(cell.folder, val, test=val[-1])
    runs.update_status(cell.folder, "fit", state="finished", classes=10, seconds=12.5)
    return cell.folder


def test_export_run_elsewhere_and_report_merge(tmp_path, monkeypatch, capsys):
    """Cells exported from machine A count as done on machine B (same arguments, other data
    location), B's new cell joins them, and the report from B, from the results folder alone
    and the export again (nothing overwritten) agree."""
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path / "s", GOOD)
    s = load_study(path)
    fabricate_cell(s, "a", "plain", 0, [0.3, 0.5], ["data.root=/machine/a"])
    assert study.main(["export", "a", "results/s"]) == 2  # a has no study.yaml yet
    assert "has no study.yaml" in capsys.readouterr().err
    keep_study_file(s, Path("a"))
    assert study.main(["export", "a", "results/s"]) == 0
    assert "exported: plain/seed_0 -> results/s/cells/plain/seed_0" in capsys.readouterr().out
    assert sorted(p.name for p in Path("results/s/cells/plain/seed_0").iterdir()) == ["cell.json", "metrics.csv", "status.json"]  # fmt: skip
    assert Path("results/s/study.yaml").read_text() == path.read_text()

    args = ["run", str(path), "--out", "b", "--seeds", "0", "--results", "results/s", "--set", "data.root=/machine/b", "--dry-run"]  # fmt: skip
    assert study.main(args) == 0
    out = capsys.readouterr().out
    assert "[1/2] plain/seed_0: finished in the results folder, skipped" in out
    assert "[2/2] se/seed_0: new" in out and "1 to run" in out
    smoke = [*args[:-1], "--dry-run", "--", "--trainer.max_epochs=1"]
    assert study.main(smoke) == 2
    assert "plain/seed_0 in results/s cannot be counted: this command adds arguments after -- `--trainer.max_epochs=1`" in capsys.readouterr().err  # fmt: skip

    fabricate_cell(s, "b", "se", 0, [0.4, 0.6], ["data.root=/machine/b"])
    assert study.main(["report", "b", "--study", str(path), "--results", "results/s"]) == 0
    merged = pd.read_csv("b/cells.csv").set_index(["arm", "seed"])
    assert merged.loc[("plain", 0), "test/acc_top1"] == pytest.approx(50.0)
    assert merged.loc[("plain", 0), "folder"] == str(Path("results/s/cells/plain/seed_0"))
    assert merged.loc[("se", 0), "test/acc_top1"] == pytest.approx(60.0)
    assert merged["status"].tolist() == ["finished", "finished", "missing", "missing"]
    summary = pd.read_csv("b/results.csv").set_index("arm")
    assert summary.loc["se", "diff"] == pytest.approx(10.0)
    keep_study_file(s, Path("b"))
    assert study.main(["export", "b", "results/s"]) == 0
    assert study.main(["export", "a", "results/s"]) == 0  # the same files: left as they are
    assert "unchanged: plain/seed_0" in capsys.readouterr().out
    assert study.main(["report", "results/s"]) == 0  # a clone has only the results folder
    clone = pd.read_csv("results/s/cells.csv").set_index(["arm", "seed"])
    assert clone["test/acc_top1"].iloc[:2].tolist() == merged["test/acc_top1"].iloc[:2].tolist()
    write_metrics(Path("a/plain/seed_0"), [0.3, 0.7], test=0.7)  # other results, same cell
    assert study.main(["export", "a", "results/s"]) == 2
    assert "results/s/cells/plain/seed_0 already holds other results" in capsys.readouterr().err
    assert pd.read_csv("results/s/cells/plain/seed_0/metrics.csv")["test/acc_top1"].max() == 0.5
    other = write_study(tmp_path / "other", GOOD.replace("[0, 1]", "[0, 1, 2]"))
    keep_study_file(load_study(other), Path("c"))
    assert study.main(["export", "c", "results/s"]) == 2
    error = capsys.readouterr().err
    assert f"results/s/study.yaml holds a different study than {Path('c/study.yaml')}" in error


@pytest.mark.slow
def test_smoke_then_real_and_rerun_as_a_user_types_them(tiny_study):
    """A smoke cell, refused by the real command (one line, exit 2), rerun with the smoke cell
    kept aside."""
    (tiny_study / "study.yaml").write_text("base: base.yaml\narms: {plain: []}\nseeds: [0]\n")
    smoke = run_study("run", "study/study.yaml", "--out", "a", "--", "--trainer.max_epochs=1")
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert "short: 1 of the recipe's 2 epochs" in Path("a/results.md").read_text()
    real = run_study("run", "study/study.yaml", "--out", "a")
    assert real.returncode == 2 and real.stderr.count("\n") == 1, real.stderr
    assert "plain/seed_0 in a cannot be reused: it ran with arguments after -- `--trainer.max_epochs=1`" in real.stderr  # fmt: skip
    rerun = run_study("run", "study/study.yaml", "--out", "a", "--rerun")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    (kept,) = Path("a/replaced/plain").iterdir()
    assert runs.epochs_done(runs.read_metrics(kept)) == 1
    assert runs.epochs_done(runs.read_metrics("a/plain/seed_0")) == 2


@pytest.mark.slow
def test_export_then_completion_elsewhere_merge_into_one_report(tiny_study):
    """Machine A runs one arm and exports it; machine B (another folder) counts A's committed
    cell through --results, runs only the other arm and exports it; the report over both has A's
    numbers, and `study report` on the results folder alone (a clone) gives the same table."""
    (tiny_study / "study.yaml").write_text(
        "base: base.yaml\narms: {plain: [], se: [se.yaml]}\nseeds: [0]\n"
        "other_metrics: [test/loss]\n"
    )
    a = run_study("run", "study/study.yaml", "--out", "a", "--arms", "plain")
    assert a.returncode == 0, a.stdout + a.stderr
    export = run_study("export", "a", "results/tiny")
    assert export.returncode == 0, export.stdout + export.stderr
    exported = Path("results/tiny/cells/plain/seed_0")
    assert sorted(p.name for p in exported.iterdir()) == ["cell.json", "config.yaml", "metrics.csv", "status.json"]  # fmt: skip
    status = runs.read_status(exported)["fit"]
    assert status["hardware"] and status["seconds"] > 0 and "commit" in status

    b = run_study("run", "study/study.yaml", "--out", "b", "--results", "results/tiny")
    assert b.returncode == 0, b.stdout + b.stderr
    assert "[1/2] plain/seed_0: finished in the results folder, skipped" in b.stdout
    assert not Path("b/plain/seed_0").exists() and Path("results/tiny/cells/se/seed_0").is_dir()
    merged = pd.read_csv("b/cells.csv").set_index("arm")
    a_test = runs.final_value(runs.read_metrics("a/plain/seed_0"), "test/acc_top1")
    assert merged.loc["plain", "test/acc_top1"] == pytest.approx(100 * a_test)
    assert (merged["status"] == "finished").all()
    assert study.main(["report", "results/tiny"]) == 0  # from a clone: the committed cells alone
    clone = pd.read_csv("results/tiny/cells.csv").set_index("arm")
    columns = ["status", "epochs", "test/acc_top1", "test/loss"]
    assert clone[columns].equals(merged[columns])


def test_the_study_file_may_follow_the_settings(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path / "s", GOOD)
    assert study.main(["run", "--set", "data.root=/x", "trainer.max_epochs=1", str(path), "--dry-run"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "study s: 4 cells" in out and "--data.root=/x --trainer.max_epochs=1" in out
    assert study.main(["run", "--set", "data.root=/x", "--dry-run", str(path)]) == 0


def test_a_figure_without_finished_values_says_so(tmp_path):
    s = parse_study(yaml.safe_load(textwrap.dedent(REPORT_STUDY)), default_name="fab")
    out = tmp_path / "out"
    cells, curves = results.collect(s, out)
    fig = results.figure(s, cells, results.summarise(s, cells), curves)
    assert [t.get_text() for t in fig.axes[0].texts] == ["no finished cells yet"]
    write_metrics(cellplan.cell_dir(out, "plain", 0), [0.4], test=0.4)  # one epoch: no last-2 mean
    cells, curves = results.collect(s, out)
    fig = results.figure(s, cells, results.summarise(s, cells), curves)
    assert [t.get_text() for t in fig.axes[0].texts] == [
        "no finished cell has val/acc_top1 last 2 mean"
    ]


def test_the_value_a_cell_command_line_gives_a_key():
    given = cell_identity.given
    assert given("trainer.precision", ["data.root=/a"], []) is None
    assert given("trainer.precision", ["trainer.precision=32"], []) == "32"
    extra = ["--trainer.max_epochs", "1", "--trainer.precision", "bf16-mixed"]
    assert given("trainer.precision", ["trainer.precision=32"], extra) == "bf16-mixed"  # later
    assert given("trainer.precision", [], ["--trainer.precision=16-mixed"]) == "16-mixed"
    assert given("trainer.precision", [], ["--trainer.precision"]) is None  # no value follows


def test_the_value_a_config_after_the_double_dash_gives_a_key(tmp_path):
    given = cell_identity.given
    fp32 = tmp_path / "fp32.yaml"
    fp32.write_text("trainer: {precision: 32}\n")
    other = tmp_path / "other.yaml"
    other.write_text("trainer: {max_epochs: 1}\n")
    assert given("trainer.precision", [], ["--config", str(fp32)]) == 32
    assert given("trainer.precision", [], [f"--config={fp32}", "--config", str(other)]) == 32
    assert given("trainer.precision", ["trainer.precision=bf16-mixed"], ["--config", str(other)]) == "bf16-mixed"  # fmt: skip
    assert given("trainer.precision", [], ["--config", str(fp32), "--trainer.precision=16-mixed"]) == "16-mixed"  # fmt: skip


BF16_STUDY = """
    base: base.yaml
    arms: {plain: []}
    seeds: [0]
"""


@pytest.mark.parametrize("native", [True, False], ids=["native-bf16", "no-bf16"])
def test_a_cell_trained_in_another_precision_than_this_machine_gives_is_never_counted(
    tmp_path, monkeypatch, capsys, native
):
    """A bf16 recipe trains in float32 on a CPU without native bf16 (selab.precision), so a bf16
    cell exported from a machine that has it is not counted on one that lacks it, and the other
    way round; `--set cpu_bf16=always` (bf16 anyway) and remote launchers count it."""
    from selab import precision

    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path / "s", BF16_STUDY)
    (tmp_path / "s/base.yaml").write_text("trainer: {precision: bf16-mixed, max_epochs: 2}\n")
    s = load_study(path)
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    cell = cellplan.plan(s, Path("a"), ["data.root=/a"], [], ["plain"], [0])[0]
    assert cell.precision == ("bf16-mixed" if native else "32-true")
    assert cell.identity.recipe == {"max_epochs": 2, "limit_train_batches": None, "precision": "bf16-mixed"}  # fmt: skip
    folder = fabricate_cell(s, "a", "plain", 0, [0.3, 0.5], ["data.root=/a"])
    trained = cell.precision
    (folder / runs.CONFIG).write_text(f"trainer:\n  precision: {trained}\ncpu_bf16: native\n")
    keep_study_file(s, Path("a"))
    assert study.main(["export", "a", "results/s"]) == 0
    capsys.readouterr()

    # the other machine
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: not native)
    other = "32-true" if native else "bf16-mixed"
    args = ["run", str(path), "--out", "b", "--results", "results/s", "--set", "data.root=/b", "--dry-run"]  # fmt: skip
    assert study.main(args) == 2
    assert capsys.readouterr().err == (
        f"error: plain/seed_0 in results/s cannot be counted: it trained in {trained}, this "
        f"command trains in {other} on this machine; pass another --results (committed cells "
        "are never replaced)\n"
    )
    assert study.main(["run", str(path), "--out", "a", "--dry-run"]) == 2  # its own folder too
    assert "cannot be reused: it trained in" in capsys.readouterr().err
    counted = "plain/seed_0: finished in the results folder, skipped"
    if native:  # bf16 on the CPU without it, as the cell trained
        assert study.main([*args, "--set", "data.root=/b", "cpu_bf16=always"]) == 0
        assert counted in capsys.readouterr().out
    remote = cellplan.plan(s, Path("b"), ["data.root=/b"], [], results=Path("results/s"), here=False)  # fmt: skip
    assert remote[0].action == cellplan.COMMITTED and remote[0].precision is None


def test_the_report_flags_a_cell_trained_in_another_precision_than_asked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path / "s", BF16_STUDY.replace("[0]", "[0, 1]"))
    (tmp_path / "s/base.yaml").write_text("trainer: {precision: bf16-mixed}\n")
    s = load_study(path)
    for seed, trained in [(0, "bf16-mixed"), (1, "32-true")]:
        folder = fabricate_cell(s, "out", "plain", seed, [0.3, 0.5])
        (folder / runs.CONFIG).write_text(f"trainer: {{precision: {trained}}}\n")
    cells, _ = results.collect(s, "out")
    assert cells["flags"].tolist() == ["", "precision: trained in 32-true, its arguments ask bf16-mixed"]  # fmt: skip
    asked32 = fabricate_cell(s, "out32", "plain", 0, [0.3, 0.5], ["trainer.precision=32"])
    (asked32 / runs.CONFIG).write_text("trainer: {precision: 32}\n")
    assert results.collect(s, "out32")[0]["flags"].tolist()[0] == ""
