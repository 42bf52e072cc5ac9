"""Every shipped config, alone or composed as it is meant to be used, trains one step.

Configs compose: a recipe plus overlays (``lightning fit --config recipe.yaml --config arm.yaml``).
The combinations run here are every (base + arm) of every study file, plus the improved recipes
with their overlays listed in ``IMPROVED``; every YAML file under ``configs/`` must appear in at
least one of them. ``fast_dev_run`` runs one training and one validation batch with the
combination's own backbone, optimizer, scheduler and image size on fake files in the dataset's
on-disk format; only the data location, the batch size (2) and the validation split size change.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import QUIET, REPO
from fakedata import (
    patch_cifar10_checksums,
    patch_stl10_checksums,
    write_cifar10,
    write_imagefolder,
    write_stl10,
)
from selab.cli import main, run
from selab.study.spec import load_study

CONFIGS = REPO / "configs"
STUDY_FILES = sorted(CONFIGS.rglob("study*.yaml"))
ATTENTION = sorted((CONFIGS / "attention").glob("*.yaml"))
# Debug, logger and other presets overlay any recipe; tested with ResNet-20.
PRESETS = sorted(
    p for name in ("debug", "logger", "presets") for p in (CONFIGS / name).glob("*.yaml")
)


def relative(*names: str) -> tuple[Path, ...]:
    return tuple(CONFIGS / name for name in names)


IMPROVED = [
    relative("cifar10/resnet20.yaml"),
    *[relative("cifar10/resnet20.yaml") + (overlay,) for overlay in ATTENTION],
    relative("cifar10/resnet20.yaml", "cifar10/resnet56.yaml"),
    relative("cifar10/resnet20.yaml", "cifar10/resnet110.yaml", "attention/se.yaml"),
    relative("cifar10/resnet20.yaml", "cifar10/resnet164.yaml", "attention/se.yaml"),
    relative("cifar10/resnet18.yaml", "attention/se_dual_add.yaml"),
    relative("cifar10/wrn16_8.yaml", "attention/se.yaml"),
    relative("cifar10/shake_shake26.yaml", "attention/se.yaml"),
    relative("cifar10/vgg_small.yaml", "studies/vgg_small/dense.yaml"),
    relative("cifar10/speedrun94.yaml"),
    relative("cifar10/speedrun94.yaml", "cifar10/speedrun94_se.yaml"),
    relative("stl10/resnet20.yaml", "attention/eca.yaml"),
    relative("stl10/mobilenetv1.yaml", "studies/mobilenetv1_stl10/no_se.yaml"),
]


def study_combinations() -> list[tuple[Path, ...]]:
    combos = []
    for path in STUDY_FILES:
        study = load_study(path)
        for arm in study.arms.values():
            combos.append((*study.base, *arm.configs))
    return combos


COMBINATIONS = list(dict.fromkeys([*IMPROVED, *study_combinations()]))
# The largest networks run at their real size in the study tests only once.
HEAVY = {"shake_shake26_2x96d", "resnet50"}


def combo_id(combo: tuple[Path, ...]) -> str:
    return "+".join(str(p.relative_to(CONFIGS).with_suffix("")) for p in combo)


def merged_data(combo: tuple[Path, ...]) -> dict:
    data: dict = {}
    for path in combo:
        data.update((yaml.safe_load(path.read_text()) or {}).get("data") or {})
    return data


def test_every_config_file_is_used_by_a_tested_combination():
    used = {path.resolve() for combo in COMBINATIONS for path in combo}
    used |= {path.resolve() for path in PRESETS}
    files = {p.resolve() for p in CONFIGS.rglob("*.yaml")} - {p.resolve() for p in STUDY_FILES}
    assert files - used == set(), "configs no tested combination uses"
    assert len(STUDY_FILES) >= 7  # vgg, mobilenet, 2 pooling tables, shake, 4 SE-paper nets


def test_overlays_are_small():
    """An arm differs from its recipe by the lines that differ in the study: a few lines."""
    recipes = {combo[0] for combo in COMBINATIONS}
    overlays = {p for combo in COMBINATIONS for p in combo[1:]} - recipes
    for path in overlays:
        lines = [
            line
            for line in path.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
        assert len(lines) <= 8, f"{path} has {len(lines)} lines: is it a recipe?"


@pytest.fixture(scope="module")
def data_roots(tmp_path_factory):
    """One fake copy of each dataset for the whole module (writing them is the slow part)."""
    roots = {}
    for name, write in (
        ("cifar10", write_cifar10),
        ("stl10", write_stl10),
        ("imagefolder", write_imagefolder),
    ):
        root = tmp_path_factory.mktemp(name)
        write(root)
        roots[name] = root
    return roots


@pytest.mark.parametrize("combo", COMBINATIONS, ids=combo_id)
def test_combination_runs_one_step(combo, data_roots, in_tmp, monkeypatch):
    data = merged_data(combo)
    dataset = data.get("dataset", "cifar10")
    root = data_roots[dataset]
    if dataset == "cifar10":
        patch_cifar10_checksums(monkeypatch, root)
    elif dataset == "stl10":
        patch_stl10_checksums(monkeypatch, root)
    args = ["fit"]
    for path in combo:
        args += ["--config", str(path)]
    args += [
        f"--data.root={root}", "--data.batch_size=2", "--data.download=false",
        "--trainer.fast_dev_run=true", *QUIET,
    ]  # fmt: skip
    if data.get("val_size", None) != 0:
        args.append("--data.val_size=10")  # the fake training splits are small
    if any(name in combo_id(combo) for name in HEAVY):
        args.append("--data.image_size=32")
    cli = run(args)
    assert cli.trainer.global_step == 1
    assert cli.model.num_classes == 10
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])


OPTIONAL_EXTRAS = {"mlflow": "mlflow", "wandb": "wandb"}  # preset stem -> the package it needs


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_preset_overlays_a_recipe(preset, data_roots, in_tmp, monkeypatch):
    """A preset sets its trainer values on top of any recipe, keeps selab's callbacks (presets
    append theirs with ``callbacks+``), and the run still trains."""
    if preset.stem in OPTIONAL_EXTRAS:  # without the extra, check the logger's arguments only
        for logger in yaml.safe_load(preset.read_text())["trainer"]["logger"]:
            module, name = logger["class_path"].rsplit(".", 1)
            inspect.signature(getattr(importlib.import_module(module), name)).bind(
                **logger["init_args"]
            )
        monkeypatch.setenv("WANDB_MODE", "offline")
        pytest.importorskip(
            OPTIONAL_EXTRAS[preset.stem],
            reason=f"optional extra: pip install -e '.[{preset.stem}]'",
        )
    root = data_roots["cifar10"]
    patch_cifar10_checksums(monkeypatch, root)
    args = [
        "--config", str(CONFIGS / "cifar10/resnet20.yaml"), "--config", str(preset),
        f"--data.root={root}", "--data.batch_size=2", "--data.download=false",
        "--data.val_size=10", *QUIET,
    ]  # fmt: skip
    if preset.stem == "rich":  # a progress bar preset needs the progress bar on
        args.remove("--trainer.enable_progress_bar=false")
    cli = run(args, run=False)
    trainer_values = (yaml.safe_load(preset.read_text()).get("trainer") or {}).copy()
    logger = trainer_values.pop("logger", None)
    added = trainer_values.pop("callbacks+", [])
    for key, value in trainer_values.items():
        assert cli.config.trainer[key] == value, key
    callbacks = {type(c).__module__ + "." + type(c).__name__ for c in cli.trainer.callbacks}
    assert "selab.callbacks.checkpoint.ModelCheckpoint" in callbacks
    for entry in added:
        assert any(c.endswith("." + entry["class_path"].rsplit(".", 1)[1]) for c in callbacks)
    if logger is not None:
        loggers = logger if isinstance(logger, list) else [logger]
        logger_classes = [type(lg).__name__ for lg in cli.trainer.loggers]
        assert logger_classes[: len(loggers)] == [
            lg["class_path"].rsplit(".", 1)[1] for lg in loggers
        ]
    # and it runs: one batch (fast_dev_run overrides the preset's own limits)
    cli = run(["fit", *args, "--trainer.fast_dev_run=true"])
    assert cli.trainer.global_step == 1
    if preset.stem == "mlflow":  # the run is named after the configs, as the run folder is
        assert cli.config.fit.trainer.logger[1].init_args.run_name == "cifar10/resnet20"


@pytest.mark.parametrize(
    "configs, expected",
    [
        (
            ("studies/vgg_small/recipe.yaml", "studies/vgg_small/dense.yaml"),
            {
                "trainer.max_epochs": 20,
                "model.backbone.init_args.connection": "dense",
                "model.backbone.init_args.init": "default",
                "model.optimizer.init_args.lr": 0.1,
                "model.optimizer.init_args.momentum": 0.0,
                "model.lr_scheduler": None,
                "data.batch_size": 100,
                "data.val_size": 0,
                "data.augment": "none",
                "data.normalize": False,
            },
        ),
        (
            ("studies/mobilenetv1_stl10/recipe.yaml",),
            {
                "trainer.max_epochs": 100,
                "model.backbone.init_args.stem": "seed",
                "model.backbone.init_args.num_classes": 10,  # STL10's, not the builder's 1000
                "trainer.logger.init_args.name": "studies/mobilenetv1_stl10/recipe",
                "model.loss_reduction": "sum",
                "model.optimizer.class_path": "torch.optim.Adam",
                "model.optimizer.init_args.lr": 0.01,
                "model.lr_scheduler_monitor": "val/loss",
                "model.lr_scheduler.init_args.patience": 10,
                "model.lr_scheduler.init_args.factor": 0.1,
                "data.image_size": 224,
                "data.batch_size": 32,
                "data.normalize": False,
            },
        ),
    ],
    ids=["vgg_small-dense", "mobilenetv1_stl10"],
)
def test_print_config_shows_the_studys_values(configs, expected, capsys, monkeypatch):
    """``lightning fit --config recipe --config arm --print_config`` resolves to the note's recipe."""
    monkeypatch.setattr(sys, "argv", ["lightning"])
    args = ["fit"]
    for name in configs:
        args += ["--config", str(CONFIGS / name)]
    with pytest.raises(SystemExit) as exit_:
        run([*args, "--print_config"])
    assert exit_.value.code in (None, 0)
    printed = yaml.safe_load(capsys.readouterr().out)
    for dotted, value in expected.items():
        node = printed
        for key in dotted.split("."):
            node = node[key]
        assert node == value, dotted


def test_fast_debug_config_writes_nothing(data_roots, in_tmp, monkeypatch):
    """``configs/debug/fast.yaml`` promises a run that leaves no file behind."""
    root = data_roots["cifar10"]
    patch_cifar10_checksums(monkeypatch, root)
    main(
        [
            "fit",
            "--config",
            str(CONFIGS / "cifar10/resnet20.yaml"),
            "--config",
            str(CONFIGS / "debug/fast.yaml"),
            f"--data.root={root}",
            "--data.batch_size=2",
            "--data.download=false",
            "--data.val_size=10",
            *QUIET,
        ]  # fmt: skip
    )
    assert sorted(str(p.relative_to(in_tmp)) for p in in_tmp.rglob("*")) == []


def test_configs_cite_studies_without_paths_outside_the_repository():
    """A clone has no ``../shared`` folder: configs and notebooks cite the study notes by name."""
    files = [p for p in CONFIGS.rglob("*.yaml") if p not in STUDY_FILES]
    files += sorted((REPO / "notebooks").glob("*.ipynb"))
    assert [str(p) for p in files if "shared/" in p.read_text()] == []
